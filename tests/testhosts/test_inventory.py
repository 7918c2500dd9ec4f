"""The inventory a fleet writes is one xpdctl accepts, with the pools and router the layout implies."""

from __future__ import annotations

from xpdctl.inventory import load_inventory
from xpdctl.testhosts import inventory
from xpdctl.testhosts.fleet import plan
from xpdctl.testhosts.models import GpuDecl


def _write(tmp_path, record, declare_nics=True):
    path = tmp_path / "fleet.yaml"
    inventory.write(record, tmp_path / "id_ed25519", tmp_path / "known_hosts", path, declare_nics)
    return load_inventory(path).inventory


def test_nvidia_prefill_amd_decode_router_on_plain_host(tmp_path):
    record = plan("th", 3, [GpuDecl(vendor="nvidia", count=8), GpuDecl(vendor="amd", count=8)], 1, "10.88.9.0/24")
    inv = _write(tmp_path, record, declare_nics=False)
    assert inv.pools.prefill.hosts == ["th-1"] and inv.pools.decode.hosts == ["th-2"]
    assert inv.router.hosts == ["th-3"]
    assert (inv.engine.runtime, inv.engine.server) == ("native", "sim")
    assert inv.defaults.ssh.user == "root" and inv.defaults.ssh.key == str(tmp_path / "id_ed25519")
    nvidia = inv.hosts[0]
    assert (nvidia.vendor, nvidia.gpu.model, nvidia.gpu.count, nvidia.nics) == ("nvidia", "H100-SXM", 8, [])


def test_simulated_nics_are_declared_unless_asked_not_to(tmp_path):
    """Declared NICs are what preflight checks; serving end to end needs them left out (they carry no
    traffic, and UCX_NET_DEVICES would name them)."""
    record = plan("th", 2, [GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2)], 2, "10.88.9.0/24")
    inv = _write(tmp_path, record)
    assert [h.nics for h in inv.hosts] == [["mlx5_0", "mlx5_1"], ["mlx5_0", "mlx5_1"]]


def test_one_vendor_splits_gpu_hosts_between_pools(tmp_path):
    record = plan("th", 2, [GpuDecl(vendor="nvidia", count=2)] * 2, 0, "10.88.9.0/24")
    inv = _write(tmp_path, record)
    assert (inv.pools.prefill.hosts, inv.pools.decode.hosts, inv.router.hosts) == (["th-1"], ["th-2"], ["th-1"])
