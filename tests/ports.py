"""Free TCP ports on loopback for the engines, routers and simulators that tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports on loopback, below the kernel's ephemeral range.

    vLLM binds its HTTP port a minute or more after it starts; a port from the ephemeral range may by
    then be taken by any outgoing connection (vLLM's own ZMQ sockets included).
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, low - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports on loopback")
