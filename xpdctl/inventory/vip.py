"""``router.vip`` checked against the router hosts: VRRP moves the address between hosts on one network.

keepalived adds the address to the interface of the host that holds it, with the network's prefix,
and the others answer VRRP adverts on that same network: an address outside it, or a router host on
another network, would be held but never reached (or never taken over).
"""

from __future__ import annotations

import ipaddress

from xpdctl.inventory.problems import Problem
from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.topology import hosts_by_name

LOC = ("router", "vip")


def vip_problems(inv: Inventory) -> list[Problem]:
    vip = inv.router.vip
    if vip is None:
        return []
    try:
        network = ipaddress.ip_network(vip.network, strict=True)
    except ValueError as exc:
        return [Problem((*LOC, "network"), f"{vip.network!r} is not a network ({exc}); write e.g. 10.0.0.0/24")]
    try:
        address = ipaddress.ip_address(vip.address)
    except ValueError:
        return [Problem((*LOC, "address"), f"{vip.address!r} is not an IP address; VRRP moves an address, not a name")]
    problems = []
    if address not in network:
        problems.append(Problem((*LOC, "address"), f"{address} is outside router.vip.network {network}: the router "
                                                   "hosts could hold it but clients on that network would not reach "
                                                   "it; pick a free address in the network"))
    elif network.num_addresses > 2 and address in (network.network_address, network.broadcast_address):
        problems.append(Problem((*LOC, "address"), f"{address} is the network's own or broadcast address; "
                                                   "pick a free host address"))
    hosts = hosts_by_name(inv)
    taken = {h.address: h.name for h in inv.hosts}
    if vip.address in taken:
        problems.append(Problem((*LOC, "address"), f"{address} is {taken[vip.address]}'s own address; the virtual "
                                                   "address must be one no host has"))
    for j, name in enumerate(inv.router.hosts):
        host = hosts.get(name)
        if host is None:
            continue
        try:
            inside = ipaddress.ip_address(host.address) in network
        except ValueError:
            inside = False
        if not inside:
            problems.append(Problem(("router", "hosts", j), f"{name} ({host.address}) is not in router.vip.network "
                                                            f"{network}: VRRP needs every router host on the "
                                                            "virtual address's network"))
    if inv.router.listen not in ("0.0.0.0", "::"):
        problems.append(Problem(("router", "listen"), f"the router listens on {inv.router.listen} only, so it "
                                                      "would not answer at router.vip; use 0.0.0.0"))
    return problems
