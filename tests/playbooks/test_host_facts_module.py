"""The preflight role's xpd_host_facts module, on sysfs and /proc trees built in a temporary folder.

No GPU or RDMA NIC exists here, so the hardware is simulated at the lowest layer the module reads:
files shaped like sysfs (bus/pci/devices, class/infiniband, class/net, efivars) and /proc/net/tcp.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from xpdctl.probes.pci import parse_sysfs_listing

MODULE = Path(__file__).resolve().parents[2] / "playbooks/roles/preflight/library/xpd_host_facts.py"
_spec = importlib.util.spec_from_file_location("xpd_host_facts", MODULE)
facts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(facts)


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _pci(root: Path, address: str, vendor: str, device: str, klass: str) -> None:
    for name, value in (("vendor", vendor), ("device", device), ("class", klass)):
        _write(root / "bus/pci/devices" / address / name, value + "\n")


def test_pci_listing_is_in_the_format_the_probes_parser_reads(tmp_path):
    _pci(tmp_path, "0000:05:00.0", "0x1002", "0x74a1", "0x120000")
    _pci(tmp_path, "0000:00:00.0", "0x1022", "0x14a4", "0x060000")
    listing = facts.pci_listing(str(tmp_path))
    assert listing.splitlines() == ["0000:00:00.0 0x1022 0x14a4 0x060000", "0000:05:00.0 0x1002 0x74a1 0x120000"]
    gpus = [d for d in parse_sysfs_listing(listing) if d.kind == "gpu"]
    assert [(d.vendor, d.device_id) for d in gpus] == [("amd", "0x74a1")]


def test_no_pci_tree_gives_an_empty_listing(tmp_path):
    assert facts.pci_listing(str(tmp_path)) == ""


def test_nic_states_from_infiniband_ports_and_net_operstate(tmp_path):
    _write(tmp_path / "class/infiniband/mlx5_0/ports/1/state", "4: ACTIVE\n")
    _write(tmp_path / "class/infiniband/mlx5_1/ports/1/state", "1: DOWN\n")
    _write(tmp_path / "class/net/eth1/operstate", "up\n")
    states = facts.nic_states(str(tmp_path), ["mlx5_0:1", "mlx5_1", "eth1", "mlx5_9"])
    assert states == {
        "mlx5_0": {"kind": "rdma", "ports": {"1": "4: ACTIVE"}},
        "mlx5_1": {"kind": "rdma", "ports": {"1": "1: DOWN"}},
        "eth1": {"kind": "net", "ports": {"1": "up"}},
        "mlx5_9": {"kind": "missing", "ports": {}},
    }


def test_secure_boot_from_the_efi_variable(tmp_path):
    assert facts.secure_boot(str(tmp_path)) == "no-uefi"
    var = tmp_path / "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    (tmp_path / "firmware/efi").mkdir(parents=True)
    assert facts.secure_boot(str(tmp_path)) == "unknown"
    _write(var, b"\x06\x00\x00\x00\x01")
    assert facts.secure_boot(str(tmp_path)) == "enabled"
    _write(var, b"\x06\x00\x00\x00\x00")
    assert facts.secure_boot(str(tmp_path)) == "disabled"


def test_listening_ports_from_proc_net_tcp(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    _write(tmp_path / "tcp", header
           + "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
           + "   1: 0100007F:9C40 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n")
    _write(tmp_path / "tcp6", header
           + "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0 0 0 0 0 3 1\n")
    # 0x1F40 = 8000 listening, 0x9C40 an established client socket, 0x16 = 22 on IPv6.
    assert facts.listening_ports(str(tmp_path)) == [22, 8000]


def test_disk_space_measures_the_nearest_existing_parent(tmp_path):
    (entry,) = facts.disk_space([str(tmp_path / "not/yet/there")])
    assert entry["measured"] == str(tmp_path) and entry["free_bytes"] > 0
