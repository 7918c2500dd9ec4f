"""``firewall:`` checked against the rest of the inventory and against this machine's own routes.

The firewall lets a host be reached by the cluster's hosts and ``control`` only (besides the ports it
opens), so applying it from a machine ``control`` does not list would cut xpdctl off the hosts in the
middle of its run: that is refused at ``check``, with the address to add.
"""

from __future__ import annotations

import ipaddress
import socket

from xpdctl.inventory.problems import Problem
from xpdctl.inventory.schema import Inventory

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(text: str) -> Network:
    """An address or a network; host bits set are an error (10.0.0.5/24 is a typo for one of two things)."""
    return ipaddress.ip_network(text, strict=True)


def _networks(values: list[str], field: str) -> tuple[list[Network], list[Problem]]:
    found, problems = [], []
    for j, value in enumerate(values):
        try:
            found.append(network(value))
        except ValueError as exc:
            problems.append(Problem(("firewall", field, j), f"{value!r} is not an address or network ({exc}); "
                                                            "write e.g. 10.0.0.7 or 10.0.0.0/24"))
    return found, problems


def source_address(destination: str, port: int) -> str | None:
    """The address this machine sends from to reach ``destination`` (its routing table's choice; a UDP
    socket's connect sends nothing). None when there is no route or the address is a name."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(destination).version == 6 else socket.AF_INET
    except ValueError:
        return None
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((destination, port))
        except OSError:
            return None
        return probe.getsockname()[0]


def firewall_problems(inv: Inventory) -> list[Problem]:
    fw = inv.firewall
    if fw is None:
        return []
    control, problems = _networks(fw.control, "control")
    problems += _networks(fw.clients, "clients")[1] + _networks(fw.prometheus, "prometheus")[1]
    for j, port in enumerate(fw.open_ports):
        if not 1 <= port <= 65535:
            problems.append(Problem(("firewall", "open_ports", j), f"{port} is not a TCP port; use 1-65535"))
    if problems:
        return problems
    for j, host in enumerate(inv.hosts):
        if not _is_ip(host.address):
            problems.append(Problem(("hosts", j, "address"), f"{host.address!r} is a name; the firewall's rules match "
                                                             "addresses: give the host's IP address"))
    cluster = [ipaddress.ip_address(h.address) for h in inv.hosts if _is_ip(h.address)]
    for host in inv.hosts:
        ssh = host.ssh or inv.defaults.ssh
        source = source_address(host.address, ssh.port)
        if source is None:
            continue
        here = ipaddress.ip_address(source)
        if here in cluster or any(here in net for net in control):
            continue
        problems.append(Problem(("firewall", "control"), f"this machine reaches {host.name} ({host.address}) from "
                                                         f"{source}, which control does not list: the firewall would cut "
                                                         f"xpdctl off the hosts; add {source} (or its network)"))
        break  # one machine, one address to add
    return problems


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
