"""Test hosts end to end: real network namespaces, overlay roots, sshd, Ansible over real SSH.

GPUs and RDMA NICs cannot exist here, so they are simulated at the lowest layer: a fake sysfs PCI tree
bind-mounted inside each host, and stand-in packages with the real names whose nvidia-smi / amd-smi /
ibv_devinfo print the real formats for the declared hardware. The outputs are read back with
xpdctl's own parsers (xpdctl.probes), the same code status and preflight use on real servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.testhosts.conftest import ssh, ssh_argv
from xpdctl.inventory import load_inventory
from xpdctl.probes.amd import parse_amd_smi, parse_rocm_smi_product
from xpdctl.probes.nvidia import QUERY_ARGS, parse_query_csv, parse_query_xml
from xpdctl.probes.pci import parse_sysfs_listing
from xpdctl.testhosts import fleet, host, network, supervise
from xpdctl.testhosts.layout import fleet_dirs
from xpdctl.testhosts.models import GpuDecl

pytestmark = pytest.mark.testhosts

FLEET, SUBNET = "thst", "10.88.20.0/24"
APT = "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --allow-downgrades "


def _with_sources(*lines: str) -> str:
    """APT after adding vendor sources (the mirror serves each package only in its own repository)."""
    return "".join(f"echo '{line}' > /etc/apt/sources.list.d/test-{i}.list && " for i, line in enumerate(lines)) + APT


AMD_SOURCES = ("deb https://repo.radeon.com/amdgpu/6.4.1/ubuntu jammy main", "deb https://repo.radeon.com/rocm/apt/6.4.1 jammy main")
PCI_LISTING = (
    'for d in /sys/bus/pci/devices/*; do echo "${d##*/} $(cat $d/vendor) $(cat $d/device) $(cat $d/class)"; done'
)
NVIDIA_OLD, NVIDIA_NEW = "570.148.08-0ubuntu0.22.04.1", "570.172.08-0ubuntu0.22.04.1"


def _nvidia_packages(version: str) -> str:
    """The driver at one version: its exact-version dependencies named too, and the running kernel's
    headers, which its DKMS build needs."""
    names = ("nvidia-driver-570-server-open", "nvidia-dkms-570-server-open", "nvidia-utils-570-server",
             "nvidia-compute-utils-570-server", "nvidia-fabricmanager-570")  # fmt: skip
    return "linux-headers-$(uname -r) " + " ".join(f"{name}={version}" for name in names)


@pytest.fixture(scope="module")
def hosts(make_fleet, tmp_path_factory):
    inventory_path = tmp_path_factory.mktemp("thst") / "inventory.yaml"
    record = make_fleet(
        FLEET, 2, [GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2)], SUBNET,
        inventory_path=inventory_path,
    )  # fmt: skip
    return record, inventory_path


def _ansible(record, tmp_path: Path, module: str, args: str = "", limit: str = "all") -> subprocess.CompletedProcess:
    dirs = fleet_dirs(record.name)
    lines = [
        f"{h.name} ansible_host={h.address} ansible_user=root ansible_ssh_private_key_file={dirs.key} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={dirs.known_hosts} -o StrictHostKeyChecking=yes'"
        for h in record.hosts
    ]
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("\n".join(lines) + "\n")
    argv = [str(Path(sys.executable).parent / "ansible"), limit, "-i", str(inventory), "-m", module, "-o", "-T", "5"]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent"}
    return subprocess.run(
        argv + (["-a", args] if args else []), capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )


def test_each_host_answers_ssh_as_itself_with_systemctl_as_pid_1(hosts):
    record, _ = hosts
    for rec in record.hosts:
        out = ssh(record, rec.address, "hostname; . /etc/os-release; echo $ID $VERSION_ID; readlink -f /proc/1/exe /sbin/init")
        assert out.stdout.splitlines() == [rec.name, "ubuntu 22.04", "/usr/bin/python3.11", "/usr/bin/systemctl"]


def test_written_inventory_loads_and_names_the_hosts(hosts):
    record, inventory_path = hosts
    inv = load_inventory(inventory_path).inventory
    assert [(h.name, h.address, h.vendor, h.gpu.count) for h in inv.hosts] == [
        (h.name, h.address, h.gpu.vendor, h.gpu.count) for h in record.hosts
    ]


def test_standin_nvidia_smi_reports_the_declared_gpus(hosts):
    record, _ = hosts
    nvidia = record.hosts[0]
    assert ssh(record, nvidia.address, "command -v nvidia-smi", check=False).returncode != 0
    ssh(record, nvidia.address, APT + _nvidia_packages(NVIDIA_NEW))
    query = parse_query_csv(ssh(record, nvidia.address, "nvidia-smi " + " ".join(QUERY_ARGS)).stdout)
    xml = parse_query_xml(ssh(record, nvidia.address, "nvidia-smi -q -x").stdout)
    for found in (query, xml):
        assert found.driver_version == "570.172.08"
        assert [(g.index, g.name, g.memory_total_mib) for g in found.gpus] == [
            (0, "NVIDIA H100 80GB HBM3", 81559),
            (1, "NVIDIA H100 80GB HBM3", 81559),
        ]
    assert [g.uuid for g in query.gpus] == [g.uuid for g in xml.gpus]
    assert ssh(record, nvidia.address, "nvidia-smi").stdout.count("NVIDIA H100 80GB HBM3") == 2
    pci = parse_sysfs_listing(ssh(record, nvidia.address, PCI_LISTING).stdout)
    assert [(d.vendor, d.address) for d in pci if d.kind == "gpu"] == [
        ("nvidia", "0000:18:00.0"),
        ("nvidia", "0000:2a:00.0"),
    ]


def test_standin_amd_tools_report_the_declared_gpus(hosts):
    record, _ = hosts
    amd = record.hosts[1]
    ssh(record, amd.address, _with_sources(*AMD_SOURCES) + "linux-headers-$(uname -r) amdgpu-dkms rocm ibverbs-utils")
    found = parse_amd_smi(
        ssh(record, amd.address, "amd-smi static --json").stdout, ssh(record, amd.address, "amd-smi metric --json").stdout
    )
    assert [(g.index, g.name, g.memory_total_mib) for g in found.gpus] == [
        (0, "AMD Instinct MI300X", 196592),
        (1, "AMD Instinct MI300X", 196592),
    ]
    cards = parse_rocm_smi_product(ssh(record, amd.address, "rocm-smi --showproductname --json").stdout)
    assert len(cards.gpus) == 2
    pci = parse_sysfs_listing(ssh(record, amd.address, PCI_LISTING).stdout)
    assert sum(d.vendor == "amd" and d.kind == "gpu" for d in pci) == 2
    assert "PORT_ACTIVE" in ssh(record, amd.address, "ibv_devinfo -d mlx5_0").stdout


def test_hosts_ping_each_other_across_the_bridge(hosts):
    record, _ = hosts
    first, second = record.hosts
    for source, target in ((first, second), (second, first)):
        for name in (target.address, target.name):
            ssh(record, source.address, f"ping -c 1 -W 5 {name}")


def test_ansible_ping_over_real_ssh(hosts, tmp_path):
    record, _ = hosts
    done = _ansible(record, tmp_path, "ansible.builtin.ping")
    assert done.returncode == 0, done.stdout + done.stderr
    for rec in record.hosts:
        assert f"{rec.name} | SUCCESS" in done.stdout


def test_ansible_sees_ubuntu_2204_managed_by_systemd(hosts, tmp_path):
    record, _ = hosts
    done = _ansible(record, tmp_path, "ansible.builtin.setup", "filter=ansible_distribution*,ansible_service_mgr")
    assert done.returncode == 0, done.stdout + done.stderr
    for line in done.stdout.splitlines():
        facts = json.loads(line.split(" => ", 1)[1])["ansible_facts"]
        assert (facts["ansible_distribution"], facts["ansible_distribution_version"]) == ("Ubuntu", "22.04")
        assert (facts["ansible_distribution_release"], facts["ansible_service_mgr"]) == ("jammy", "systemd")


def test_daemonless_systemctl_starts_and_stops_a_unit(hosts):
    record, _ = hosts
    target = record.hosts[0]
    unit = (
        "[Unit]\nDescription=echo server\n[Service]\nEnvironment=PORT=8711\n"
        "ExecStart=/usr/bin/python3 -m http.server ${PORT} --directory /etc\n[Install]\nWantedBy=multi-user.target\n"
    )
    ssh(record, target.address, f"cat > /etc/systemd/system/xpd-echo.service <<'UNIT'\n{unit}UNIT")
    ssh(record, target.address, "systemctl enable xpd-echo && systemctl start xpd-echo")
    assert ssh(record, target.address, "systemctl is-active xpd-echo").stdout.strip() == "active"
    with urllib.request.urlopen(f"http://{target.address}:8711/hostname", timeout=10) as answer:
        assert answer.read().decode().strip() == target.name
    ssh(record, target.address, "systemctl stop xpd-echo")
    assert ssh(record, target.address, "systemctl is-active xpd-echo", check=False).stdout.strip() == "inactive"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{target.address}:8711/hostname", timeout=5)


def test_injected_package_failure_fails_the_install_with_its_message(hosts):
    record, _ = hosts
    nvidia = record.hosts[0]
    fleet.set_faults(FLEET, nvidia.name, fail_install=["libnvidia-nscq-570"])
    try:
        failed = ssh(record, nvidia.address, APT + f"libnvidia-nscq-570={NVIDIA_NEW}", check=False)
        assert failed.returncode != 0
        assert "libnvidia-nscq-570: post-installation script failed" in failed.stdout + failed.stderr
    finally:
        fleet.set_faults(FLEET, nvidia.name, fail_install=[])
    ssh(record, nvidia.address, "dpkg --configure -a")
    assert "ii" in ssh(record, nvidia.address, "dpkg -l libnvidia-nscq-570 | tail -1").stdout


def test_unreachable_host_fails_alone(hosts, tmp_path):
    record, _ = hosts
    cut, other = record.hosts
    fleet.set_faults(FLEET, cut.name, reachable=False)
    try:
        assert subprocess.run([*ssh_argv(record, cut.address, "-o", "ConnectTimeout=3"), "true"],
                              capture_output=True, timeout=60).returncode == 255  # fmt: skip
        done = _ansible(record, tmp_path, "ansible.builtin.ping")
        assert f"{cut.name} | UNREACHABLE!" in done.stdout
        assert f"{other.name} | SUCCESS" in done.stdout
    finally:
        fleet.set_faults(FLEET, cut.name, reachable=True)
    assert ssh(record, cut.address, "hostname").stdout.strip() == cut.name


def test_fewer_gpus_than_declared(hosts):
    record, inventory_path = hosts
    nvidia = record.hosts[0]
    fleet.set_faults(FLEET, nvidia.name, gpu_count=1)
    try:
        pci = parse_sysfs_listing(ssh(record, nvidia.address, PCI_LISTING).stdout)
        assert sum(d.kind == "gpu" for d in pci) == 1
        assert load_inventory(inventory_path).inventory.hosts[0].gpu.count == 2
    finally:
        fleet.set_faults(FLEET, nvidia.name, gpu_count=2)


def test_driver_upgrade_takes_effect_at_reboot(hosts):
    """The stand-in driver "loads" at boot, so an upgrade without a reboot leaves nvidia-smi refusing
    (NVML version mismatch) and fabric manager stopped, as on a real server; the reboot fixes both."""
    record, _ = hosts
    nvidia = record.hosts[0]
    ssh(record, nvidia.address, APT + _nvidia_packages(NVIDIA_OLD) + " && systemctl enable nvidia-fabricmanager")
    fleet.reboot(FLEET, nvidia.name)
    assert "570.148.08" in ssh(record, nvidia.address, "nvidia-smi --version").stdout
    ssh(record, nvidia.address, APT + _nvidia_packages(NVIDIA_NEW))
    stale = ssh(record, nvidia.address, "nvidia-smi -L", check=False)
    assert stale.returncode == 18 and "Driver/library version mismatch" in stale.stderr
    ssh(record, nvidia.address, "systemctl restart nvidia-fabricmanager", check=False)
    assert ssh(record, nvidia.address, "systemctl is-active nvidia-fabricmanager", check=False).stdout.strip() != "active"
    fleet.reboot(FLEET, nvidia.name)
    assert ssh(record, nvidia.address, "nvidia-smi -L").stdout.count("GPU ") == 2
    assert ssh(record, nvidia.address, "systemctl is-active nvidia-fabricmanager").stdout.strip() == "active"


def test_ansible_reboot_module_reboots_a_host(hosts, tmp_path):
    """The stand-in `shutdown -r` ends the host; its supervisor boots it again with a new boot_id,
    which is how Ansible's reboot module tells that the reboot happened."""
    record, _ = hosts
    target = record.hosts[1]
    boot_id = ssh(record, target.address, "cat /proc/sys/kernel/random/boot_id").stdout
    ssh(record, target.address, "touch /run/marker")
    done = _ansible(record, tmp_path, "ansible.builtin.reboot", "reboot_timeout=300", limit=target.name)
    assert done.returncode == 0 and '"rebooted": true' in done.stdout, done.stdout + done.stderr
    assert ssh(record, target.address, "cat /proc/sys/kernel/random/boot_id").stdout != boot_id
    assert ssh(record, target.address, "test -e /run/marker", check=False).returncode == 1
    assert ssh(record, target.address, "systemctl is-active ssh").stdout.strip() == "active"


def _wait_rebooted(record, address: str, boot_id: str, timeout_s: float) -> str:
    """The host's new boot_id, once it answers with one (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            now = ssh(record, address, "cat /proc/sys/kernel/random/boot_id", check=False).stdout
        except subprocess.TimeoutExpired:
            now = ""
        if now.strip() and now != boot_id:
            return now
        time.sleep(1)
    raise AssertionError(f"{address} did not come back within {timeout_s:.0f} s")


def _outer_pid_1(netns: str) -> int:
    """This machine's PID of the host's PID 1 (the process that is PID 1 in its own PID namespace)."""
    for pid in network.netns_pids(netns):
        status = Path(f"/proc/{pid}/status").read_text()
        nspids = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[1:]
        if len(nspids) > 1 and nspids[-1] == "1":
            return pid
    raise AssertionError(f"no PID 1 in {netns}")


def test_reboot_asked_while_pid_1_still_boots_is_not_lost(hosts):
    """PID 1 (Debian's daemonless systemctl) takes SIGTERM only after starting every enabled unit; a
    reboot asked right after SSH answers (Ansible does exactly that) must still happen."""
    record, _ = hosts
    target = record.hosts[1]
    fleet.reboot(FLEET, target.name)
    boot_id = ssh(record, target.address, "cat /proc/sys/kernel/random/boot_id; shutdown -r 0 'right after boot'").stdout
    _wait_rebooted(record, target.address, boot_id.splitlines()[0] + "\n", 300)


def test_pid_1_that_never_ends_is_powered_off_after_the_grace(hosts):
    """A shutdown that hangs (here: PID 1 frozen from outside, so it never handles the request) ends
    with the supervisor cutting the power after its grace, and the host boots again."""
    record, _ = hosts
    target = record.hosts[1]
    boot_id = ssh(record, target.address, "cat /proc/sys/kernel/random/boot_id").stdout
    os.kill(_outer_pid_1(target.netns), signal.SIGSTOP)
    ssh(record, target.address, "reboot")
    _wait_rebooted(record, target.address, boot_id, supervise.SHUTDOWN_GRACE_S + 300)
    log = fleet_dirs(FLEET).host(target.name).log.read_text()
    assert "cutting the power" in log


def test_poweroff_inside_leaves_the_host_stopped_until_created_again(hosts):
    record, _ = hosts
    target = record.hosts[1]
    dirs = fleet_dirs(FLEET).host(target.name)
    ssh(record, target.address, "poweroff")
    deadline = time.monotonic() + 300  # PID 1 stops every service first; slow on a loaded machine
    while host.pid(dirs) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert host.pid(dirs) is None
    fleet.create(FLEET, 2, [h.gpu for h in record.hosts], subnet=SUBNET)
    assert ssh(record, target.address, "hostname").stdout.strip() == target.name


def test_create_again_keeps_running_hosts(hosts):
    record, _ = hosts
    pids = [host.pid(fleet_dirs(FLEET).host(h.name)) for h in record.hosts]
    again = fleet.create(FLEET, 2, [h.gpu for h in record.hosts], subnet=SUBNET)
    assert again.hosts == record.hosts
    assert [host.pid(fleet_dirs(FLEET).host(h.name)) for h in record.hosts] == pids


def test_destroy_leaves_nothing_behind(make_fleet):
    name = "thdx"
    record = make_fleet(name, 1, [GpuDecl(vendor="nvidia", count=1)], "10.88.21.0/24")
    dirs = fleet_dirs(name)
    rec = record.hosts[0]
    processes = network.netns_pids(rec.netns) + [host.pid(dirs.host(rec.name)), int(dirs.apt_server_pid.read_text())]
    assert len(processes) >= 4  # unshare, PID 1, sshd, the mirror at least
    removed = fleet.destroy(name)
    assert removed == [rec.netns, record.bridge]
    # A killed host's PID 1 may linger a moment as a zombie of this machine's init: it holds nothing.
    assert not any(host.alive(pid) for pid in processes)
    assert rec.netns not in network.netns_list()
    assert not network.link_exists(rec.veth) and not network.link_exists(record.bridge)
    assert not dirs.root.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(dirs.root) not in mounts
    assert fleet.destroy(name) == []  # a second destroy finds nothing and does not fail


def test_kernel_settings_a_playbook_changes_stay_in_the_host(hosts):
    record, _ = hosts
    target = record.hosts[1]
    machine = Path("/proc/sys/kernel/numa_balancing")
    before, forward = machine.read_text(), Path("/proc/sys/net/ipv4/ip_forward").read_text()
    wanted = "0" if before.strip() == "1" else "1"
    try:
        ssh(record, target.address, f"sysctl -w kernel.numa_balancing={wanted} net.ipv4.ip_forward=1")
        assert ssh(record, target.address, "cat /proc/sys/kernel/numa_balancing").stdout.strip() == wanted
        assert machine.read_text() == before
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward  # the host's network is its own
        pid_max = Path("/proc/sys/kernel/pid_max").read_text()
        refused = ssh(record, target.address, f"sysctl -w kernel.pid_max={int(pid_max) + 1}", check=False)
        assert refused.returncode != 0 and "kernel.pid_max" in refused.stderr
        assert Path("/proc/sys/kernel/pid_max").read_text() == pid_max
        assert "Read-only file system" in ssh(record, target.address, "touch /sys/kernel/x", check=False).stderr
    finally:
        machine.write_text(before)
