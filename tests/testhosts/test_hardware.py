"""Declared GPUs -> hardware.json and the fake sysfs tree, read back by xpdctl's own PCI parser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from xpdctl.probes.pci import parse_sysfs_listing
from xpdctl.testhosts import hardware
from xpdctl.testhosts.models import GpuDecl

REPO = Path(__file__).resolve().parents[2]


def _listing(root):
    devices = root / "sys/bus/pci/devices"
    lines = []
    for device in sorted(devices.iterdir()):
        fields = [(device / name).read_text().strip() for name in ("vendor", "device", "class")]
        lines.append(" ".join([device.name, *fields]))
    return "\n".join(lines)


def test_mi300x_host_shows_accelerators_and_nics_on_the_pci_bus(tmp_path):
    hw = hardware.build("h-1", "seed", GpuDecl(vendor="amd", count=8), None, ["mlx5_0", "mlx5_1"])
    hardware.write(tmp_path, hw)
    devices = parse_sysfs_listing(_listing(tmp_path))
    gpus = [d for d in devices if d.kind == "gpu"]
    assert len(gpus) == 8 and {(d.vendor, d.device_id, d.class_code) for d in gpus} == {("amd", "0x74a1", "0x120000")}
    assert [d.vendor for d in devices if d.kind == "nic"] == ["mellanox", "mellanox"]
    assert (tmp_path / "sys/class/infiniband/mlx5_1/ports/1/state").read_text().strip() == "4: ACTIVE"
    assert hardware.read(tmp_path) == hw


def test_rewrite_in_place_keeps_the_folder_a_host_has_mounted(tmp_path):
    hardware.write(tmp_path, hardware.build("h-1", "seed", GpuDecl(vendor="nvidia", count=8), None, []))
    devices = tmp_path / "sys/bus/pci/devices"
    inode = devices.stat().st_ino
    hardware.write(tmp_path, hardware.build("h-1", "seed", GpuDecl(vendor="nvidia", count=8), 7, []))
    assert devices.stat().st_ino == inode
    assert sum(d.kind == "gpu" for d in parse_sysfs_listing(_listing(tmp_path))) == 7


def test_ids_are_stable_per_seed_and_differ_between_hosts():
    decl = GpuDecl(vendor="nvidia", count=2, model="H200-SXM")
    first, again, other = (hardware.build("h", seed, decl, None, []) for seed in ("a", "a", "b"))
    assert first == again
    assert {g.uuid for g in first.gpus}.isdisjoint(g.uuid for g in other.gpus)
    assert first.gpus[0].product_name == "NVIDIA H200" and first.gpus[0].memory_mib == 143771


def test_secure_boot_is_the_efi_variable_the_preflight_module_reads_rewritten_in_place(tmp_path):
    """Read back by the preflight role's own module (playbooks/roles/preflight/library/xpd_host_facts.py)."""
    spec = importlib.util.spec_from_file_location("xpd_host_facts", REPO / "playbooks/roles/preflight/library/xpd_host_facts.py")
    facts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(facts)
    hw = hardware.build("h-1", "seed", GpuDecl(vendor="nvidia", count=2), None, [])
    hardware.write(tmp_path, hw)
    assert facts.secure_boot(str(tmp_path / "sys")) == "disabled"
    variable = tmp_path / hardware.SECURE_BOOT_VAR
    inode = variable.stat().st_ino
    hardware.write(tmp_path, hw.model_copy(update={"faults": hw.faults.model_copy(update={"secure_boot": True})}))
    assert facts.secure_boot(str(tmp_path / "sys")) == "enabled" and variable.stat().st_ino == inode
