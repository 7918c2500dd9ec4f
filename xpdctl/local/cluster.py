"""Which cluster an inventory names, where its state lives and which executor runs its services.

``up``, ``status`` and ``down`` start here. Only clusters whose hosts are all this machine have an
executor yet (:class:`~xpdctl.local.executor.LocalExecutor`); a multi-host form plugs a provisioning
step and remote executors in at :func:`executor_for`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from xpdctl.errors import InputError
from xpdctl.local.executor import Executor, LocalExecutor
from xpdctl.paths import cluster_state_dir

ENGINE_ROLES = ("prefill", "decode")
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


def executor_for(plan, state_dir: Path) -> Executor:
    """The executor that runs this plan's services. Only clusters on this machine have one yet."""
    from xpdctl.inventory.topology import runtime_of

    inv = plan.inventory
    remote = [h.name for h in inv.hosts if not is_this_machine(h.address)]
    containers = [h.name for h in inv.hosts if runtime_of(inv, h) != "native"]
    if remote or containers:
        raise InputError(
            f"up, status and down run here only for clusters whose hosts are all this machine with "
            f"runtime: native; {', '.join(sorted(set(remote + containers)))} are not. For real hosts, render the "
            "cluster (`xpdctl render`) and provision it; try `xpdctl up -i inventory/local.yaml` here"
        )
    return LocalExecutor(state_dir)


def router_url(plan) -> str:
    inv = plan.inventory
    host = next(h for h in inv.hosts if h.name == inv.router.host)
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


def open_cluster(inventory: Path) -> Cluster:
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    plan = build_plan(load_inventory(inventory), os.environ)
    state_dir = cluster_state_dir(plan.cluster)
    return Cluster(plan=plan, state_dir=state_dir, executor=executor_for(plan, state_dir))
