"""ibv_devinfo parser on tests/fixtures/rdma/ibv_devinfo.txt, HAND-WRITTEN from ibv_devinfo's documented
output layout (no RDMA NIC here): mlx5_0 port active, mlx5_1 port down."""

from __future__ import annotations

from pathlib import Path

from xpdctl.probes.rdma import parse_ibv_devinfo

SAMPLE = (Path(__file__).resolve().parents[1] / "fixtures" / "rdma" / "ibv_devinfo.txt").read_text()


def test_ports_and_states():
    ports = parse_ibv_devinfo(SAMPLE)
    assert [(p.device, p.port, p.state, p.active_mtu) for p in ports] == [
        ("mlx5_0", 1, "PORT_ACTIVE", 4096),
        ("mlx5_1", 1, "PORT_DOWN", 1024),
    ]
    assert ports[0].firmware == "28.39.1002"
    assert ports[0].link_layer == "Ethernet"


def test_no_devices():
    assert parse_ibv_devinfo("No IB devices found\n") == []
