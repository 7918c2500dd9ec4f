"""Which cluster an inventory names, where its state lives and which executor runs its services.

``up``, ``status``, ``down`` and ``upgrade`` start here. A cluster whose hosts are all this machine
with runtime native (:func:`xpdctl.deploy.where.runs_locally`) runs under the
:class:`~xpdctl.local.executor.LocalExecutor`; any other runs on its hosts through systemd over SSH
(:class:`~xpdctl.remote.executor.RemoteExecutor`), after ``up`` provisioned them.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from xpdctl.local.executor import Executor, LocalExecutor
from xpdctl.paths import cluster_state_path

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
    """The executor that runs this plan's services."""
    from xpdctl.deploy.where import runs_locally

    if runs_locally(plan.inventory):
        return LocalExecutor(state_dir)
    from xpdctl.remote.executor import RemoteExecutor

    return RemoteExecutor(plan.inventory, rendered_dir(state_dir))


def host_shell_for(plan):
    """Runs a script on a host of this plan: this machine's shell where :func:`executor_for` runs
    services here, SSH otherwise."""
    from xpdctl.deploy.where import runs_locally
    from xpdctl.observe.transport import LocalShellTransport, cluster_ssh
    from xpdctl.remote.hostrun import HostShell, ssh_targets

    inv = plan.inventory
    transport = LocalShellTransport() if runs_locally(inv) else cluster_ssh(inv.cluster, record=True)
    return HostShell(transport, ssh_targets(inv))


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
    # Not created here: status only reads it; up's executor and render create what they write.
    state_dir = cluster_state_path(plan.cluster)
    return Cluster(plan=plan, state_dir=state_dir, executor=executor_for(plan, state_dir))
