"""Provisioning end to end: real Ansible over real SSH against test hosts (xpdctl.testhosts).

The fleet: an NVIDIA-like host (2 x H100-SXM) on which nouveau holds the GPUs until a reboot with it
blacklisted (a fresh Ubuntu install), an AMD-like host (2 x MI300X), a router host without GPUs and
a second AMD-like host. GPUs, NICs and vendor packages are simulated at the lowest layer (sysfs
entries, stand-in apt packages with the real names served by a strict local mirror of the vendor
repositories, xpdctl/testhosts/packages.yaml); engines run natively with the simulator engine. DKMS
stand-ins fail without the running kernel's headers with DKMS's message; the fabric manager and
persistence daemon stand-ins exit while the NVIDIA module of their version is not loaded, with the real
tools' messages. Faults are injected the way test hosts offer them: a package whose install script
fails, a host whose link is down, a host showing fewer GPUs than declared, firmware with Secure Boot
on. Runs with --tags cover one layer each, and the negative runs (typos in a role's repository URL,
suite or version) use them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.provision import preflight, provision, render_now
from xpdctl.remote.executor import apply_rendered
from xpdctl.testhosts import fleet
from xpdctl.testhosts.layout import fleet_dirs
from xpdctl.testhosts.models import GpuDecl

pytestmark = pytest.mark.testhosts

FLEET = "provtest"
NVIDIA, AMD, ROUTER, AMD2 = (f"{FLEET}-{i}" for i in range(1, 5))


def _ssh(address: str, command: str) -> subprocess.CompletedProcess:
    dirs = fleet_dirs(FLEET)
    argv = ["ssh", "-i", str(dirs.key), "-o", f"UserKnownHostsFile={dirs.known_hosts}", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", f"root@{address}", command]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, testhosts_possible):
    tmp = tmp_path_factory.mktemp("provision-testhosts")
    patch = pytest.MonkeyPatch()
    patch.setenv("XPDCTL_STATE_DIR", str(tmp / "state"))
    inventory = tmp / "fleet.yaml"
    gpus = [GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2), None, GpuDecl(vendor="amd", count=2)]
    # The inventory leaves the simulated NICs out: injecting a fault rewrites the host's simulated
    # /sys/class under a mounted overlay, whose stale listing then shows mlx5_0 without ports.
    record = fleet.create(FLEET, 4, gpus, subnet="10.88.57.0/24", inventory_path=inventory, declare_nics=False)
    try:
        fleet.set_faults(FLEET, NVIDIA, nouveau=True)
        fleet.reboot(FLEET, NVIDIA)
        yield record, load_inventory(inventory)
    finally:
        fleet.destroy(FLEET)
        patch.undo()


@pytest.fixture(scope="module")
def fresh_check(lab):
    """--check on fresh GPU hosts, before anything else touched them."""
    _, loaded = lab
    return provision(loaded, render_now(loaded), check=True, limit=f"{NVIDIA},{AMD}")


def _address(record, name: str) -> str:
    return next(h.address for h in record.hosts if h.name == name)


def _provision_then_services(loaded, **options):
    """What `up` does on hosts: the playbooks (the host layer), then xpdctl's applier installs and
    starts the cluster's services on the hosts whose host layer finished (xpdctl/deploy/bringup.py)."""
    tree = render_now(loaded)
    run = provision(loaded, tree, **options)
    ready = [name for name, host in run.hosts.items() if host.status in ("ok", "changed")]
    applied = apply_rendered(loaded.inventory, tree, ready)
    assert not applied.problems(), applied.problems()
    return run


def test_check_mode_on_fresh_hosts_runs_every_role_and_changes_nothing(lab, fresh_check):
    record, _ = lab
    assert fresh_check.ok, {name: host.failure for name, host in fresh_check.hosts.items()}
    assert all(host.changed > 0 for host in fresh_check.hosts.values())
    found = _ssh(_address(record, NVIDIA), "ls /etc/xpdctl /etc/modprobe.d/blacklist-nouveau.conf; dpkg -l 'nvidia-driver-*'")
    assert found.returncode != 0 and "No such file" in found.stderr and "ii " not in found.stdout


def test_check_mode_says_not_checked_where_it_cannot_check(fresh_check):
    """A fresh host has read neither AMD's repository nor the Ubuntu archive's jammy lists, so --check
    cannot ask apt about their packages, and daemons not installed yet cannot be asked about either:
    "not checked", never "ok". (The cluster's own units are not the playbooks' business: xpdctl's
    applier installs them after, and `up --check` shows its own diff.)"""
    amd, nvidia = fresh_check.hosts[AMD], fresh_check.hosts[NVIDIA]
    assert amd.status == "not checked" and nvidia.status == "not checked"
    assert {"amdgpu-dkms", "amd-smi-lib", "rocm"} <= set(amd.not_checked)
    assert all(reason.startswith("not checked: ") for reason in amd.not_checked.values())
    assert {"nvidia-driver-570-server-open", "nvidia-fabricmanager-570", "nvidia-persistenced",
            "nvidia-fabricmanager"} <= set(nvidia.not_checked)


def test_container_hosts_get_the_amd_driver_and_amd_smi_not_the_rocm_meta_package(lab, fresh_check):
    _, loaded = lab
    checked = provision(loaded, render_now(loaded), check=True, limit=AMD2, tags="amd_rocm",
                        extra_vars={"xpd_container_runtime": True})  # fmt: skip
    assert checked.ok
    assert set(checked.hosts[AMD2].not_checked) == {"amdgpu-dkms", "amd-smi-lib"}


@pytest.fixture(scope="module")
def faulty_run(lab, fresh_check):
    """First run: the AMD host's amdgpu-dkms fails to install, the second AMD host is unreachable."""
    record, loaded = lab
    fleet.set_faults(FLEET, AMD, fail_install=["amdgpu-dkms"])
    fleet.set_faults(FLEET, AMD2, reachable=False)
    try:
        return _provision_then_services(loaded)
    finally:
        fleet.set_faults(FLEET, AMD, fail_install=[])
        fleet.set_faults(FLEET, AMD2, reachable=True)


def test_one_failing_package_and_one_unreachable_host_do_not_stop_the_others(faulty_run):
    hosts = faulty_run.hosts
    assert not faulty_run.ok
    failure = hosts[AMD].failure
    assert hosts[AMD].status == "failed" and failure.role == "amd_rocm"
    assert "amdgpu-dkms" in failure.task or "rocm" in failure.task
    assert "Bad return status for module build" in failure.message
    assert hosts[AMD2].status == "unreachable" and "10.88.57.14" in hosts[AMD2].failure.message
    assert faulty_run.retry == f"{AMD},{AMD2}"
    for name in (NVIDIA, ROUTER):
        assert hosts[name].status == "changed" and hosts[name].failure is None


def test_the_running_kernels_headers_come_before_the_nvidia_dkms_build(lab, faulty_run):
    """Without them nvidia-dkms fails as amdgpu-dkms does ("Your kernel headers for kernel ... cannot be found")."""
    record, _ = lab
    found = _ssh(_address(record, NVIDIA), "dpkg-query -W -f='${Status}' linux-headers-$(uname -r) nvidia-dkms-570-server-open")
    # Both are installed; the headers of the running kernel are also held with the kernel ("hold ok installed").
    assert found.stdout.count("ok installed") == 2, found.stdout + found.stderr


def test_fabric_manager_waits_for_the_drivers_reboot(lab, faulty_run):
    """nouveau holds the GPUs until the reboot: fabric manager would exit ("NVIDIA driver is not
    loaded"), so without --allow-reboot it is left stopped and the reboot is reported."""
    record, _ = lab
    found = _ssh(_address(record, NVIDIA), "systemctl is-active nvidia-fabricmanager nvidia-persistenced")
    assert found.stdout.split() == ["inactive", "inactive"], found.stdout + found.stderr
    assert "nouveau blacklisted (initramfs rebuilt)" in faulty_run.hosts[NVIDIA].reboot_pending


def test_security_updates_stay_on_without_the_gpu_stack(lab, faulty_run):
    record, _ = lab
    found = _ssh(_address(record, ROUTER), "dpkg-query -W -f='${Status}' unattended-upgrades; echo;"
                 " apt-config dump | grep -E '^(Unattended-Upgrade::Package-Blacklist|APT::Periodic::Unattended-Upgrade)'")  # fmt: skip
    assert found.stdout.startswith("install ok installed"), found.stdout + found.stderr
    for pattern in ("linux-", "nvidia-", "libnvidia-", "amdgpu", "rocm", "docker-ce"):
        assert f'"{pattern}"' in found.stdout
    assert 'APT::Periodic::Unattended-Upgrade "1"' in found.stdout


def test_the_installed_units_lock_unlimited_memory(lab, faulty_run):
    """Per unit, since the manager-wide default needs a daemon-reexec (and the test hosts' daemonless
    systemctl has no manager to show it); the unit file on the host is what systemd reads."""
    record, _ = lab
    found = _ssh(_address(record, NVIDIA), f"systemctl cat xpd-{FLEET}-prefill-0 xpd-{FLEET}-kv-agent")
    assert found.stdout.count("LimitMEMLOCK=infinity") == 2, found.stdout + found.stderr


def test_the_hosts_that_finished_run_their_services(lab, faulty_run):
    record, _ = lab
    address = {h.name: h.address for h in record.hosts}
    for host, unit in ((NVIDIA, f"xpd-{FLEET}-prefill-0"), (NVIDIA, f"xpd-{FLEET}-kv-agent"), (ROUTER, f"xpd-{FLEET}-router")):
        done = _ssh(address[host], f"systemctl is-active {unit}")
        assert done.stdout.strip() == "active", (host, unit, done.stdout, done.stderr)


def test_driver_installs_ask_for_a_reboot_instead_of_rebooting(faulty_run):
    pending = faulty_run.hosts[NVIDIA].reboot_pending
    assert "NVIDIA driver installed or changed" in pending
    assert faulty_run.hosts[ROUTER].reboot_pending == []


@pytest.fixture(scope="module")
def retried(lab, faulty_run):
    """The operator fixed both hosts and re-runs everything, allowing the reboots the drivers need:
    the NVIDIA host and both AMD hosts reboot, one at a time (the default batch), the router last."""
    _, loaded = lab
    # A test host boots in seconds: a reboot that never comes back fails with Ansible's message well
    # inside the test's timeout, not after the 30 minutes a real server's DKMS builds may need.
    return _provision_then_services(loaded, allow_reboot=True, extra_vars={"reboot_timeout": 600})


def test_a_rerun_finishes_the_failed_hosts(faulty_run, retried):
    assert retried.ok
    assert all(retried.hosts[name].status == "changed" for name in faulty_run.retry.split(","))


def test_allow_reboot_reboots_and_the_services_come_back(lab, retried):
    record, _ = lab
    assert all(host.reboot_pending == [] for host in retried.hosts.values())
    # /run starts empty at boot: the reasons are gone, the enabled units run again.
    found = _ssh(_address(record, AMD), f"test ! -e /run/xpdctl/reboot-required && systemctl is-active xpd-{FLEET}-decode-0")
    assert found.stdout.strip() == "active", found.stderr


def test_fabric_manager_and_persistence_run_after_the_reboot(lab, retried):
    record, _ = lab
    found = _ssh(_address(record, NVIDIA), "systemctl is-active nvidia-fabricmanager nvidia-persistenced")
    assert found.stdout.split() == ["active", "active"], found.stdout + found.stderr


def _task_times(artifacts: str, prefix: str) -> dict[str, tuple[str, str]]:
    """host -> (first start, last end) of the tasks whose name starts with ``prefix`` and that ran on the
    host, from ansible-runner's recorded events (ISO timestamps, which compare in time order). A task
    that was skipped has a runner_on_start too, but no runner_on_ok: its host is left out."""
    starts: dict[str, list[str]] = {}
    ends: dict[str, list[str]] = {}
    for path in Path(artifacts, "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        host, task = data.get("host"), data.get("task") or ""
        if host and task.startswith(prefix) and event["event"] in ("runner_on_start", "runner_on_ok"):
            (starts if event["event"] == "runner_on_start" else ends).setdefault(host, []).append(event["created"])
    return {host: (min(starts.get(host, done)), max(done)) for host, done in ends.items()}


def test_reboots_go_one_host_at_a_time_and_each_serves_again_before_the_next(retried):
    """While one host reboots the others serve: each rebooted host whose services were installed
    (NVIDIA and the router, served since the first run; the AMD hosts failed it) listens again (its
    last wait for a port ended) before the next host's reboot starts, and the router host comes last."""
    reboots = _task_times(retried.artifacts, "Reboot (allowed by --allow-reboot)")
    serving = _task_times(retried.artifacts, "Wait for the port of ")
    assert set(reboots) == {NVIDIA, AMD, AMD2} and set(serving) == {NVIDIA, ROUTER}
    order = sorted(reboots, key=lambda host: reboots[host][0])
    for earlier, later in zip(order, order[1:], strict=False):
        assert reboots[earlier][1] < reboots[later][0], (earlier, later)
        if earlier in serving:
            assert reboots[earlier][1] < serving[earlier][1] < reboots[later][0], (earlier, later)
    assert max(end for _, end in reboots.values()) < serving[ROUTER][0]


def test_a_second_full_run_changes_nothing(lab, retried):
    _, loaded = lab
    again = provision(loaded, render_now(loaded))
    assert again.ok
    assert {name: host.changed for name, host in again.hosts.items()} == {NVIDIA: 0, AMD: 0, ROUTER: 0, AMD2: 0}


def test_check_mode_on_a_provisioned_fleet_reports_no_change(lab, retried):
    _, loaded = lab
    checked = provision(loaded, render_now(loaded), check=True, limit=f"{NVIDIA},{ROUTER}")
    assert checked.ok and checked.check
    assert {name: host.changed for name, host in checked.hosts.items()} == {NVIDIA: 0, ROUTER: 0}


def test_preflight_catches_fewer_gpus_than_the_inventory_declares(lab, retried):
    _, loaded = lab
    fleet.set_faults(FLEET, NVIDIA, gpu_count=1)
    try:
        result = preflight(loaded, render_now(loaded), limit=f"{NVIDIA},{ROUTER}")
    finally:
        fleet.set_faults(FLEET, NVIDIA, gpu_count=2)
    hosts = {host.host: host for host in result.hosts}
    gpus = next(check for check in hosts[NVIDIA].checks if check.name == "gpus")
    assert gpus.status == "fail" and "found 1 x nvidia" in gpus.detail and "2 x nvidia H100-SXM" in gpus.detail
    assert hosts[ROUTER].ok and not result.ok


def test_secure_boot_fails_the_hosts_that_build_unsigned_dkms_modules(lab, retried):
    """Secure Boot is the firmware's state: simulated at the lowest layer, the SecureBoot EFI variable
    each host sees in /sys/firmware/efi/efivars (xpdctl/testhosts/hardware.py). With it on, the
    kernel refuses the unsigned modules DKMS builds (nvidia-dkms with the default
    xpd_nvidia_modules=dkms, amdgpu-dkms): preflight fails those hosts; a host without DKMS modules,
    or an NVIDIA host taking Canonical's signed prebuilt modules, gets a warning."""
    _, loaded = lab
    hosts = (NVIDIA, AMD, ROUTER)
    off = preflight(loaded, render_now(loaded), limit=NVIDIA)
    for name in hosts:
        fleet.set_faults(FLEET, name, secure_boot=True)
    try:
        dkms = preflight(loaded, render_now(loaded), limit=",".join(hosts))
        prebuilt = preflight(loaded, render_now(loaded), limit=NVIDIA, extra_vars={"xpd_nvidia_modules": "prebuilt"})
    finally:
        for name in hosts:
            fleet.set_faults(FLEET, name, secure_boot=False)

    def secure_boot(result, name):
        host = next(host for host in result.hosts if host.host == name)
        return next((check.status, check.detail) for check in host.checks if check.name == "secure_boot")

    assert secure_boot(off, NVIDIA) == ("ok", "disabled")  # UEFI with Secure Boot off: read, not assumed
    for name in (NVIDIA, AMD):
        status, detail = secure_boot(dkms, name)
        assert status == "fail" and "refuses the unsigned DKMS module" in detail and "mokutil --import" in detail
    assert secure_boot(dkms, ROUTER)[0] == "warn" and not dkms.ok
    assert secure_boot(prebuilt, NVIDIA) == ("warn", "enabled: only signed kernel modules load")


def test_check_mode_fails_on_a_pinned_version_the_repository_does_not_have(lab, retried):
    """Once the source is on the host, --check asks apt for the exact version; no ignored errors."""
    _, loaded = lab
    checked = provision(loaded, render_now(loaded), check=True, limit=NVIDIA, tags="nvidia_driver",
                        extra_vars={"nvidia_driver_version": "570.999.99-0ubuntu0.22.04.1"})  # fmt: skip
    failure = checked.hosts[NVIDIA].failure
    assert not checked.ok and failure is not None and failure.role == "nvidia_driver"
    assert "570.999.99" in failure.message and checked.hosts[NVIDIA].ignored == 0


def test_the_container_toolkit_pins_and_holds_all_four_packages(lab, retried):
    record, loaded = lab
    done = provision(loaded, render_now(loaded), limit=NVIDIA, tags="docker,nvidia_driver",
                     extra_vars={"xpd_container_runtime": True})  # fmt: skip
    assert done.ok, done.hosts[NVIDIA].failure
    held = _ssh(_address(record, NVIDIA), "apt-mark showhold").stdout.split()
    assert {"nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1", "docker-ce", "containerd.io"} <= set(held)  # fmt: skip


def test_the_amd_device_groups_get_the_named_users(lab, retried):
    record, loaded = lab
    amd = _address(record, AMD)
    assert _ssh(amd, "id operator1 >/dev/null 2>&1 || useradd operator1").returncode == 0
    done = provision(loaded, render_now(loaded), limit=AMD, tags="amd_rocm",
                     extra_vars={"amd_rocm_device_users": ["operator1", "nobody-here"]})  # fmt: skip
    assert done.ok, done.hosts[AMD].failure
    assert {"video", "render"} <= set(_ssh(amd, "id -nG operator1").stdout.split())


def test_doca_asks_for_the_reboot_that_loads_its_modules(lab, retried):
    record, loaded = lab
    done = provision(loaded, render_now(loaded), limit=AMD2, tags="rdma",
                     extra_vars={"xpd_nics": ["mlx5_0"], "rdma_stack": "doca"})  # fmt: skip
    assert done.ok, done.hosts[AMD2].failure
    assert any("DOCA-OFED" in reason for reason in done.hosts[AMD2].reboot_pending)
    found = _ssh(_address(record, AMD2), "cat /etc/systemd/system.conf.d/90-xpd-rdma.conf")
    assert "DefaultLimitMEMLOCK=infinity" in found.stdout
    # systemd reads system.conf.d only when it (re-)executes: the new default needs a daemon-reexec.
    # The test hosts' daemonless systemctl has no manager to show the default, so the run's recorded
    # events show that the re-exec ran on the host.
    assert AMD2 in _task_times(done.artifacts, "Re-execute systemd for the memlock default")


@pytest.mark.parametrize(
    ("variables", "apt_says"),
    [
        # a typo in the repository URL, then in the suite: the mirror has neither, as Docker's would not
        ({"docker_apt_source": "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubunto jammy stable"},
         "download.docker.com/linux/ubunto"),
        ({"docker_apt_source": "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu jamy stable"},
         "jamy"),
        ({"docker_version": "5:28.3.33-1~ubuntu.22.04~jammy"}, "28.3.33"),
    ],
    ids=["url", "suite", "version"],
)
def test_a_typo_in_a_roles_repository_fails_provisioning_with_apts_message(lab, retried, variables, apt_says):
    record, loaded = lab
    try:
        done = provision(loaded, render_now(loaded), limit=ROUTER, tags="docker",
                         extra_vars={"xpd_container_runtime": True, **variables})  # fmt: skip
    finally:
        # The bad source line stays on the host (as it would on a real one); the next case starts clean.
        _ssh(_address(record, ROUTER), "rm -f /etc/apt/sources.list.d/xpd-docker.list")
    failure = done.hosts[ROUTER].failure
    assert not done.ok and failure is not None and failure.role == "docker"
    assert apt_says in failure.message, failure.message
