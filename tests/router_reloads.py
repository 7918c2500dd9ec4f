"""What a running router says, in its /metrics, about the config file it runs (tests of `up` and
`upgrade`): how many times it applied the file again, and which file."""

from __future__ import annotations

import re
import time
import urllib.request

RELOADS = 'xpd_router_config_reloads_total{result="ok"}'


def _metrics(router_url: str) -> str:
    return urllib.request.urlopen(router_url + "/metrics", timeout=10).read().decode()


def router_reloads(router_url: str, at_least: int = 1, timeout_s: float = 30.0) -> int:
    """The router's count of reloads that applied, once it reaches ``at_least`` or ``timeout_s`` passed:
    a reload is a signal the router handles after the command that sent it returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = _metrics(router_url)
        count = int(next((float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(RELOADS)), 0))
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def router_config_sha256(router_url: str) -> str:
    """sha256 of the config file the router runs now (xpd_router_config_info)."""
    found = re.search(r'^xpd_router_config_info\{[^}]*sha256="([0-9a-f]*)"', _metrics(router_url), re.M)
    return found.group(1) if found else ""
