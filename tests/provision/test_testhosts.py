"""Provisioning end to end: real Ansible over real SSH against test hosts (xpdctl.testhosts).

The fleet: an NVIDIA-like host (2 x H100-SXM), an AMD-like host (2 x MI300X), a router host without
GPUs and a second AMD-like host. GPUs, NICs and vendor packages are simulated at the lowest layer
(sysfs entries, stand-in apt packages with the real names served by a local mirror); engines run
natively with the simulator engine. Faults are injected the way test hosts offer them: a package
whose install script fails, a host whose link is down, a host showing fewer GPUs than declared.
"""

from __future__ import annotations

import subprocess

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.provision import preflight, provision, render_now
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
        yield record, load_inventory(inventory)
    finally:
        fleet.destroy(FLEET)
        patch.undo()


@pytest.fixture(scope="module")
def fresh_check(lab):
    """--check on fresh GPU hosts, before anything else touched them."""
    _, loaded = lab
    return provision(loaded, render_now(loaded), check=True, limit=f"{NVIDIA},{AMD}")


def test_check_mode_on_fresh_hosts_runs_every_role_and_changes_nothing(lab, fresh_check):
    record, _ = lab
    assert fresh_check.ok, {name: host.failure for name, host in fresh_check.hosts.items()}
    assert all(host.changed > 0 for host in fresh_check.hosts.values())
    nvidia = next(h.address for h in record.hosts if h.name == NVIDIA)
    found = _ssh(nvidia, "ls /etc/xpdctl /etc/modprobe.d/blacklist-nouveau.conf; dpkg -l 'nvidia-driver-*'")
    assert found.returncode != 0 and "No such file" in found.stderr and "ii " not in found.stdout


@pytest.fixture(scope="module")
def faulty_run(lab, fresh_check):
    """First run: the AMD host's amdgpu-dkms fails to install, the second AMD host is unreachable."""
    record, loaded = lab
    fleet.set_faults(FLEET, AMD, fail_install=["amdgpu-dkms"])
    fleet.set_faults(FLEET, AMD2, reachable=False)
    try:
        return provision(loaded, render_now(loaded))
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
    """The operator fixed both hosts and re-runs only them, allowing the reboot their driver needs."""
    _, loaded = lab
    # A test host boots in seconds: a reboot that never comes back fails with Ansible's message well
    # inside the test's timeout, not after the 30 minutes a real server's DKMS builds may need.
    return provision(loaded, render_now(loaded), limit=faulty_run.retry, allow_reboot=True,
                     extra_vars={"reboot_timeout": 600})


def test_a_retry_of_the_failed_hosts_finishes_them(retried):
    assert retried.ok and sorted(retried.hosts) == [AMD, AMD2]
    assert all(host.status == "changed" for host in retried.hosts.values())


def test_allow_reboot_reboots_and_the_services_come_back(lab, retried):
    record, _ = lab
    assert all(host.reboot_pending == [] for host in retried.hosts.values())
    amd = next(h.address for h in record.hosts if h.name == AMD)
    # /run starts empty at boot: the reasons are gone, the enabled units run again.
    found = _ssh(amd, f"test ! -e /run/xpdctl/reboot-required && systemctl is-active xpd-{FLEET}-decode-0")
    assert found.stdout.strip() == "active", found.stderr


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
