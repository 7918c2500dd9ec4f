"""``ibv_devinfo``: RDMA devices and the state of each port."""

from __future__ import annotations

import re

from xpdctl.probes.values import integer
from xpdctl.status_model import RdmaPort

_KEY_VALUE = re.compile(r"^\s*([a-z_]+):\s*(.*?)\s*$")


def parse_ibv_devinfo(raw: str) -> list[RdmaPort]:
    """Every port of every device; empty when ibv_devinfo found no device."""
    ports: list[RdmaPort] = []
    device = firmware = None
    port: dict | None = None

    def flush() -> None:
        if port is not None and device is not None and "state" in port:
            ports.append(RdmaPort(device=device, firmware=firmware, **port))

    for line in raw.splitlines():
        match = _KEY_VALUE.match(line)
        if not match:
            continue
        key, value = match.groups()
        if key == "hca_id":
            flush()
            device, firmware, port = value, None, None
        elif key == "fw_ver":
            firmware = value
        elif key == "port":
            flush()
            port = {"port": int(value)}
        elif port is not None and key == "state":
            port["state"] = value.split()[0]
        elif port is not None and key == "link_layer":
            port["link_layer"] = value
        elif port is not None and key == "active_mtu":
            port["active_mtu"] = integer(value)
    flush()
    return ports
