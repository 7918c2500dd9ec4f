"""Reachability of a prefill instance's NIXL side channel (vLLM's handshake port) from this host."""

from __future__ import annotations

import asyncio

from xpdctl.errors import InputError


def split_host_port(endpoint: str) -> tuple[str, int]:
    """``"10.0.0.1:5600"`` or ``"[fd00::1]:5600"`` -> (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"side channel {endpoint!r} is not HOST:PORT; fix the kv-agent config (render writes it)")
    return host.strip("[]"), int(port)


async def check_side_channel(endpoint: str, timeout_s: float) -> str | None:
    """None when a TCP connection to the side channel opens, else why it did not."""
    host, port = split_host_port(endpoint)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except asyncio.TimeoutError:
        return f"no answer from NIXL side channel {endpoint} within {timeout_s:g} s (firewall or wrong address?)"
    except OSError as exc:
        return f"NIXL side channel {endpoint} not reachable: {exc.strerror or exc}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the peer may reset a connection that sent nothing; reachability is already proven
    return None
