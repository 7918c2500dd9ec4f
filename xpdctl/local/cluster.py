"""A cluster on this machine: which inventory, where its state lives, its router's address.

A cluster whose hosts are all this machine with runtime native (:func:`xpdctl.deploy.where.runs_locally`)
runs under the :class:`~xpdctl.local.executor.LocalExecutor`; :mod:`xpdctl.deploy.where` picks the
executor of any cluster.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xpdctl.inventory import load_inventory
from xpdctl.local.executor import LocalExecutor
from xpdctl.paths import cluster_state_path
from xpdctl.plan import build_plan
from xpdctl.units.state import Executor

# Started only once the engines answer and the KV path is verified, so the first request a client
# sends through the router can succeed.
LATE_ROLES = ("router",)
KV_AGENT_ROLES = ("kv-agent",)


def is_this_machine(address: str) -> bool:
    try:
        if ipaddress.ip_address(address).is_loopback:
            return True
    except ValueError:
        pass
    return address in {"localhost", socket.gethostname(), socket.getfqdn()}


def router_url(plan) -> str:
    inv = plan.inventory
    host = next(h for h in inv.hosts if h.name == inv.router.hosts[0])
    listen = inv.router.listen
    address = host.address if listen in ("0.0.0.0", "::") else listen
    return f"http://{address}:{inv.router.port}"


@dataclass
class Cluster:
    plan: object  # xpdctl.plan.Plan
    state_dir: Path
    executor: Executor

    @property
    def rendered(self) -> Path:
        return rendered_dir(self.state_dir)


def rendered_dir(state_dir: Path) -> Path:
    """Where ``up`` renders a local cluster's files: its hosts' /etc/xpdctl as the executor sees it."""
    return state_dir / "rendered"


def open_cluster(inventory: Path, executor_for: Callable[[object, Path], Executor] | None = None) -> Cluster:
    """The cluster ``inventory`` names, run by ``executor_for(plan, state_dir)``: by default this
    machine's executor (:func:`xpdctl.deploy.where.executor_for` picks for any cluster)."""
    plan = build_plan(load_inventory(inventory), os.environ)
    # Not created here: status only reads it; up's executor and render create what they write.
    state_dir = cluster_state_path(plan.cluster)
    executor = executor_for(plan, state_dir) if executor_for else LocalExecutor(state_dir)
    return Cluster(plan=plan, state_dir=state_dir, executor=executor)
