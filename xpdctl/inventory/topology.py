"""Where every engine instance goes: host, GPUs, HTTP port, NIXL side-channel port.

Rules (enough GPUs, port clashes) and the plan both read this one placement, so what is validated is
exactly what is rendered. Hosts the inventory does not declare are skipped here; the rules report them.
"""

from __future__ import annotations

from dataclasses import dataclass

from xpdctl.inventory.schema import Host, Inventory, Pool, Ssh

ROLES = ("prefill", "decode")
DEFAULT_POOL_PORT = {"prefill": 8100, "decode": 8200}


@dataclass(frozen=True)
class Placement:
    role: str  # prefill | decode
    index: int  # position in its pool, cluster-wide: names the service
    host: str
    local_index: int  # position among the same role's instances on this host
    gpus: tuple[int, ...]
    port: int
    side_channel_port: int
    events_port: int  # its KV event publisher's, when its pool has prefix caching on


def hosts_by_name(inv: Inventory) -> dict[str, Host]:
    """First declaration wins; duplicates are reported by the rules."""
    result: dict[str, Host] = {}
    for host in inv.hosts:
        result.setdefault(host.name, host)
    return result


def router_addresses(inv: Inventory) -> list[str]:
    """Where clients reach the router: its virtual address and each router host's address, or the one
    address it listens on."""
    hosts = hosts_by_name(inv)
    if inv.router.listen not in ("0.0.0.0", "::"):
        return [inv.router.listen]
    vip = [inv.router.vip.address] if inv.router.vip else []
    return vip + [hosts[n].address for n in dict.fromkeys(inv.router.hosts) if n in hosts]


def pool(inv: Inventory, role: str) -> Pool:
    return getattr(inv.pools, role)


def pool_port(inv: Inventory, role: str) -> int:
    return pool(inv, role).port or DEFAULT_POOL_PORT[role]


def in_both_pools(inv: Inventory, host: str) -> bool:
    return all(host in pool(inv, role).hosts for role in ROLES)


def instances_on(inv: Inventory, role: str, host: Host) -> int:
    """Instances of ``role`` on ``host``: explicit, else the host's GPUs (half of them when shared) / TP."""
    p = pool(inv, role)
    if p.instances_per_host is not None:
        return p.instances_per_host
    gpus = host.gpu.count if host.gpu else 0
    if in_both_pools(inv, host.name):
        gpus //= 2
    return gpus // p.tensor_parallel


def place(inv: Inventory) -> list[Placement]:
    hosts = hosts_by_name(inv)
    next_gpu: dict[str, int] = {}
    next_side_channel: dict[str, int] = {}
    placements: list[Placement] = []
    for role in ROLES:
        p = pool(inv, role)
        index = 0
        for name in dict.fromkeys(p.hosts):  # a host listed twice is reported, placed once
            host = hosts.get(name)
            if host is None:
                continue
            for local in range(instances_on(inv, role, host)):
                first = next_gpu.get(name, 0)
                next_gpu[name] = first + p.tensor_parallel
                channel = next_side_channel.get(name, 0)
                next_side_channel[name] = channel + 1
                placements.append(
                    Placement(
                        role=role,
                        index=index,
                        host=name,
                        local_index=local,
                        gpus=tuple(range(first, first + p.tensor_parallel)),
                        port=pool_port(inv, role) + local,
                        side_channel_port=inv.kv.side_channel_port + channel,
                        events_port=inv.kv.events_port + channel,
                    )
                )
                index += 1
    return placements


def engine_hosts(inv: Inventory) -> list[str]:
    """Hosts that run engines, in pool order (prefill first), each once."""
    return list(dict.fromkeys(p.host for p in place(inv)))


def runtime_of(inv: Inventory, host: Host) -> str:
    return host.runtime or inv.engine.runtime


def vllm_version_of(inv: Inventory, host: Host) -> str:
    return host.vllm_version or inv.engine.vllm_version


def ssh_of(inv: Inventory, host: Host) -> Ssh:
    """The host's SSH settings: its own fields over defaults.ssh."""
    if host.ssh is None:
        return inv.defaults.ssh
    return inv.defaults.ssh.model_copy(update=host.ssh.model_dump(exclude_unset=True))
