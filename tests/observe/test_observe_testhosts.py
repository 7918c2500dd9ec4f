"""observe_cluster over real SSH against test hosts (network namespaces, xpdctl.testhosts) whose GPUs
and NICs are simulated at the lowest layer: a fake sysfs PCI tree and stand-in vendor packages whose
nvidia-smi / ibv_devinfo print the real formats."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from xpdctl.diff import diff_trees
from xpdctl.inventory import load_inventory
from xpdctl.observe.cluster import observe_cluster
from xpdctl.observe.livetree import live_tree
from xpdctl.plan import build_plan
from xpdctl.render import render_files
from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import GpuDecl

pytestmark = pytest.mark.testhosts

FLEET = "obst"
INSTALL_NVIDIA = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    "linux-headers-$(uname -r) nvidia-driver-570-server-open nvidia-utils-570-server ibverbs-utils >/dev/null"
)
# As the amd_rocm role does: AMD's repositories, headers of the running kernel (DKMS builds and loads the module).
INSTALL_AMD = (
    'echo "deb https://repo.radeon.com/rocm/apt/6.4.1 jammy main" > /etc/apt/sources.list.d/rocm.list && '
    'echo "deb https://repo.radeon.com/amdgpu/6.4.1/ubuntu jammy main" > /etc/apt/sources.list.d/amdgpu.list && '
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-$(uname -r) && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq amdgpu-dkms amd-smi-lib rocm-smi-lib rocm-core ibverbs-utils "
    ">/dev/null"
)


def _ssh(address: str, command: str, stdin: str | None = None) -> str:
    *argv, destination = fleet.ssh_argv(FLEET, address)
    argv += ["-o", "BatchMode=yes", destination, command]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command} on {address} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    inventory_path = tmp_path_factory.mktemp("obst") / "inventory.yaml"
    gpus = [GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2), None]
    record = fleet.create(FLEET, 3, gpus, subnet="10.88.8.0/24", inventory_path=inventory_path)
    try:
        gpu_host, amd_host, _ = record.hosts
        _ssh(gpu_host.address, INSTALL_NVIDIA)
        _ssh(amd_host.address, INSTALL_AMD)
        loaded = load_inventory(inventory_path)
        # Install what render produces on the NVIDIA host, as `up` would; the others get nothing.
        prefix = f"hosts/{gpu_host.name}"
        for rel, rendered in render_files(build_plan(loaded, {})).items():
            if rel.startswith(prefix + "/"):
                path = shlex.quote(rel[len(prefix) :])
                folder = shlex.quote(rel[len(prefix) :].rsplit("/", 1)[0])
                command = f"mkdir -p {folder} && cat > {path} && chmod {rendered.mode:o} {path}"
                _ssh(gpu_host.address, command, rendered.content)
        yield loaded, record
    finally:
        fleet.destroy(FLEET)


def test_gpus_nics_os_and_drift_over_ssh(hosts):
    loaded, record = hosts
    status = observe_cluster(loaded, ssh_timeout_s=30, http_timeout_s=10)
    gpu_host, amd_host, router_host = status.hosts
    assert gpu_host.reachable and amd_host.reachable and router_host.reachable
    assert (gpu_host.os.id, gpu_host.os.version_id) == ("ubuntu", "22.04")
    assert [g.name for g in gpu_host.accelerators.gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert gpu_host.accelerators.driver_version
    assert sum(d.kind == "gpu" and d.vendor == "nvidia" for d in gpu_host.pci) == 2
    assert [(p.device, p.state) for p in gpu_host.rdma] == [("mlx5_0", "PORT_ACTIVE")]
    assert gpu_host.drift_checked and gpu_host.drift == []
    assert router_host.drift and all(d.state == "missing" for d in router_host.drift)
    assert [g.name for g in amd_host.accelerators.gpus] == ["AMD Instinct MI300X"] * 2
    assert amd_host.accelerators.rocm_version and amd_host.accelerators.driver_version
    assert sum(d.kind == "gpu" and d.class_code.startswith("0x1200") for d in amd_host.pci) == 2
    for host in (gpu_host, amd_host):
        assert [p.what for p in host.problems if "GPU" in p.what or "RDMA" in p.what or "exited" in p.what] == []


def test_faults_show_as_problems(hosts):
    loaded, record = hosts
    gpu_host, _, router_host = record.hosts
    _ssh(gpu_host.address, "echo '# edited by hand' >> /etc/xpdctl/kv-agent.yaml")
    fleet.set_faults(FLEET, gpu_host.name, gpu_count=1, port_state="PORT_DOWN")
    fleet.set_faults(FLEET, router_host.name, reachable=False)
    try:
        status = observe_cluster(loaded, ssh_timeout_s=30, http_timeout_s=10)
        live = live_tree(loaded, timeout_s=30)
    finally:
        fleet.set_faults(FLEET, gpu_host.name, gpu_count=2, port_state="PORT_ACTIVE")
        fleet.set_faults(FLEET, router_host.name, reachable=True)
    gpu, _, router = status.hosts
    whats = [p.what for p in gpu.problems]
    assert "1 of 2 GPUs on the PCI bus" in whats
    assert "RDMA port mlx5_0 is PORT_DOWN" in whats
    assert [(d.path, d.state) for d in gpu.drift] == [("/etc/xpdctl/kv-agent.yaml", "changed")]
    assert not router.reachable
    assert router.problems[0].what.startswith("unreachable over SSH")
    assert not status.healthy
    # plan's live form: the GPU host differs from the plan by the edited file only; the router host
    # is reported unreachable, not as a host without files.
    rendered = render_files(build_plan(loaded, {}))
    prefix = f"hosts/{gpu_host.name}/"
    changes = diff_trees(live.files, {k: v for k, v in rendered.items() if k.startswith(prefix)}, set())
    assert [(c.path, c.status) for c in changes] == [(prefix + "etc/xpdctl/kv-agent.yaml", "changed")]
    assert "+# edited by hand" not in changes[0].diff and "-# edited by hand" in changes[0].diff
    assert list(live.unreachable) == [router_host.name]
