"""Parsing what UCX prints with UCX_PROTO_INFO=y.

The tcp and cma captures are real output of ``xpdctl.kvagent.worker`` runs on this machine (UCX
bundled with nixl 1.5.1). RDMA NICs cannot exist here, so the rc_mlx5 sample is hand-written in the
same format, with a multi-lane row and a ``self`` table that must be ignored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xpdctl.kvagent.ucxinfo import read_transports, transport_class

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("ucx_proto_info_tcp.txt", ["tcp/lo"]),
        ("ucx_proto_info_cma.txt", ["cma/memory"]),
        ("ucx_proto_info_rdma_handwritten.txt", ["rc_mlx5/mlx5_0:1", "rc_mlx5/mlx5_1:1"]),
    ],
)
def test_read_transports_of_captures(capture, expected):
    assert read_transports((DATA / capture).read_text()) == expected


def test_active_message_tables_do_not_count_as_reads():
    # The cma capture's active-message tables all say tcp/lo; only the read table matters.
    text = (DATA / "ucx_proto_info_cma.txt").read_text()
    assert "tcp/lo" in text
    assert "tcp/lo" not in read_transports(text)


def test_no_tables_means_no_transport():
    assert read_transports("2026-11-27 08:06:43 NIXL INFO    _api.py:281 Initialized NIXL agent: x\n") == []


@pytest.mark.parametrize(
    ("transport", "cls"),
    [
        ("rc_mlx5/mlx5_0:1", "rdma"),
        ("dc_mlx5/mlx5_2:1", "rdma"),
        ("tcp/eth0", "tcp"),
        ("cma/memory", "shared-memory"),
        ("frobnicate/x", "other"),
    ],
)
def test_transport_class(transport, cls):
    assert transport_class(transport) == cls
