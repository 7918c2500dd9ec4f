"""What an upgrade rolls out, and whether it may do so in place.

The target is the inventory rendered now (with ``--image`` applied to the pool's vendors). It is
compared with the deployed render: the pool may be upgraded in place only when its new generation
label equals the label of the other pool as deployed, since the router pairs only equal labels
(docs/inventory.md, KV rules). Otherwise the reason names every KV-compatibility factor that changes.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping

from pydantic import BaseModel

from xpdctl.errors import InputError
from xpdctl.inventory import LoadedInventory
from xpdctl.inventory.topology import pool, pool_port, runtime_of
from xpdctl.plan import HostPlan, Plan, build_plan, engine_services
from xpdctl.units.tree import engines

OTHER = {"prefill": "decode", "decode": "prefill"}
ALT_SUFFIX = "-next"  # surge and green instances: beside the old ones, under other names and ports


def with_image(loaded: LoadedInventory, role: str, image: str | None) -> LoadedInventory:
    """The inventory with ``image`` as the engine image of every vendor in the pool."""
    if image is None:
        return loaded
    inv = loaded.inventory
    hosts = {h.name: h for h in inv.hosts}
    native = [n for n in pool(inv, role).hosts if runtime_of(inv, hosts[n]) == "native"]
    if native:
        raise InputError(
            f"--image applies to container hosts, and {', '.join(native)} run engines natively; for a native "
            "runtime, point engine.python at the new environment in the inventory and run the upgrade without --image"
        )
    if "@sha256:" not in image:
        raise InputError(f"--image {image} is not pinned by digest; give it as REPO:TAG@sha256:DIGEST")
    vendors = {hosts[n].vendor for n in pool(inv, role).hosts}
    images = {**inv.engine.images, **{v: image for v in vendors if v}}
    engine = inv.engine.model_copy(update={"images": images})
    return dataclasses.replace(loaded, inventory=inv.model_copy(update={"engine": engine}))


def target_plan(loaded: LoadedInventory, environ: Mapping[str, str]) -> Plan:
    return build_plan(loaded, environ)


def alt_plan(loaded: LoadedInventory, environ: Mapping[str, str], names: set[str], offset: int) -> Plan:
    """The named engines of the target, renamed ``<name>-next``, every port moved up by ``offset``."""
    inv = loaded.inventory
    pools = inv.pools.model_copy(
        update={
            role: pool(inv, role).model_copy(update={"port": pool_port(inv, role) + offset})
            for role in ("prefill", "decode")
        }
    )
    kv = inv.kv.model_copy(update={"side_channel_port": inv.kv.side_channel_port + offset})
    shifted = dataclasses.replace(loaded, inventory=inv.model_copy(update={"pools": pools, "kv": kv}))
    plan = build_plan(shifted, environ)
    picked = [s for s in engine_services(shifted, environ, ALT_SUFFIX) if s.name.removesuffix(ALT_SUFFIX) in names]
    hosts = {
        name: HostPlan(name=name, address=h.address, services=[s for s in picked if s.host == name])
        for name, h in plan.hosts.items()
    }
    return dataclasses.replace(plan, hosts=hosts, engines=picked)


def check_alt_ports(alt: Plan, deployed: dict) -> None:
    """Refuse alternate ports that collide with the deployed cluster or, on this machine, are taken."""
    used = {(h, s.get("port")) for h, e in deployed["hosts"].items() for s in e["services"]}
    used |= {(h, s.get("side_channel_port")) for h, e in deployed["hosts"].items() for s in e["services"]}
    for s in alt.engines:
        port, channel = s.port, int(s.details["side_channel_port"])
        clash = [p for p in (port, channel) if (s.host, p) in used or p > 65535]
        address = alt.hosts[s.host].address
        if not clash and _is_loopback(address):
            clash = [p for p in (port, channel) if not _bindable(address, p)]
        if clash:
            raise InputError(
                f"{s.name} would listen on {s.host} port {', '.join(map(str, clash))}, which is taken; "
                "choose another --alt-port-offset"
            )


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "localhost")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        # As servers bind: a connection of a stopped process in TIME_WAIT does not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


class Verdict(BaseModel):
    """Whether the pool's new generation can pair with the other pool as deployed."""

    pool: str
    compatible: bool
    old_generation: str  # the other pool's label as deployed
    new_generation: str  # the pool's label after the upgrade
    changes: list[str]  # "factor: old -> new"

    def reason(self) -> str:
        if self.compatible:
            return (
                f"the new {self.pool} generation {self.new_generation} pairs with the deployed {OTHER[self.pool]} pool"
            )
        what = "; ".join(self.changes) or "the generation label changes"
        return (
            f"the new {self.pool} release changes KV-compatibility factors ({what}): its generation "
            f"{self.new_generation} cannot pair with the deployed {OTHER[self.pool]} pool ({self.old_generation}), "
            "so an in-place rolling upgrade would leave requests without a compatible pair"
        )


def _label(manifest: dict, role: str, what: str) -> tuple[str, dict]:
    found = engines(manifest, role)
    if not found:
        raise InputError(f"the {what} render has no {role} instances; run `xpdctl up` first")
    labels = {s["generation"] for _, s in found}
    if len(labels) > 1:
        raise InputError(
            f"the {what} {role} pool runs generations {', '.join(sorted(labels))} at once; "
            "finish the rollout in progress (`xpdctl upgrade --resume`) first"
        )
    return labels.pop(), found[0][1].get("generation_factors") or {}


def verdict(deployed: dict, target: dict, role: str) -> Verdict:
    old, old_factors = _label(deployed, OTHER[role], "deployed")
    new, new_factors = _label(target, role, "new")
    changes = (
        [
            f"{key}: {old_factors.get(key)} -> {new_factors.get(key)}"
            for key in sorted(set(old_factors) | set(new_factors))
            if old_factors.get(key) != new_factors.get(key)
        ]
        if old_factors
        else []
    )
    return Verdict(pool=role, compatible=old == new, old_generation=old, new_generation=new, changes=changes)
