"""Fixtures for KV-agent tests: loopback sockets standing in for vLLM's NIXL side channel."""

from __future__ import annotations

import socket

import pytest
from kvagent_helpers import free_port


@pytest.fixture(scope="module")
def side_channel():
    """A listening TCP socket: the agent only opens a TCP connection to vLLM's side channel, so a
    plain listener is the real thing as far as the agent can tell."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def dead_side_channel():
    """An endpoint nothing listens on (bound once for a free port number, then released)."""
    return f"127.0.0.1:{free_port()}"

