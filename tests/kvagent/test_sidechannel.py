"""Side-channel reachability against real sockets on loopback."""

from __future__ import annotations

import socket

import pytest

from xpdctl.errors import InputError
from xpdctl.kvagent.sidechannel import check_side_channel, split_host_port


@pytest.fixture
def listening_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return port  # bound once, never listened on, now released: connections are refused


async def test_open_side_channel_is_reachable(listening_port):
    assert await check_side_channel(f"127.0.0.1:{listening_port}", timeout_s=5) is None


async def test_closed_side_channel_says_which_endpoint(closed_port):
    reason = await check_side_channel(f"127.0.0.1:{closed_port}", timeout_s=5)
    assert reason is not None
    assert f"127.0.0.1:{closed_port}" in reason
    assert "not reachable" in reason


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [("10.0.0.1:5600", ("10.0.0.1", 5600)), ("[fd00::1]:5601", ("fd00::1", 5601)), ("h100-1:5600", ("h100-1", 5600))],
)
def test_split_host_port(endpoint, expected):
    assert split_host_port(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["10.0.0.1", ":5600", "host:port"])
def test_split_host_port_rejects_garbage(endpoint):
    with pytest.raises(InputError, match="HOST:PORT"):
        split_host_port(endpoint)
