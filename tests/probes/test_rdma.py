"""ibv_devinfo parser. The sample is hand-written from ibv_devinfo's documented output layout (no RDMA NIC here)."""

from __future__ import annotations

from xpdctl.probes.rdma import parse_ibv_devinfo

SAMPLE = """hca_id:\tmlx5_0
\ttransport:\t\t\tInfiniBand (0)
\tfw_ver:\t\t\t\t28.39.1002
\tnode_guid:\t\t\tb83f:d203:0012:3456
\tvendor_id:\t\t\t0x02c9
\tvendor_part_id:\t\t\t4129
\tphys_port_cnt:\t\t\t1
\t\tport:\t1
\t\t\tstate:\t\t\tPORT_ACTIVE (4)
\t\t\tmax_mtu:\t\t4096 (5)
\t\t\tactive_mtu:\t\t4096 (5)
\t\t\tlink_layer:\t\tEthernet

hca_id:\tmlx5_1
\tfw_ver:\t\t\t\t28.39.1002
\tphys_port_cnt:\t\t\t1
\t\tport:\t1
\t\t\tstate:\t\t\tPORT_DOWN (1)
\t\t\tactive_mtu:\t\t1024 (3)
\t\t\tlink_layer:\t\tEthernet
"""


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
