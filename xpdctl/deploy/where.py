"""Which form of ``up``, ``status``, ``down`` and ``upgrade`` an inventory gets: this machine's
executor, or its hosts over SSH.

A cluster whose hosts are all this machine with runtime native runs under the
:class:`~xpdctl.local.executor.LocalExecutor`; any other runs on its hosts through systemd over SSH
(:class:`~xpdctl.remote.executor.RemoteExecutor`), after ``up`` provisioned them.
"""

from __future__ import annotations

from pathlib import Path

from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.topology import runtime_of
from xpdctl.local import cluster as local_cluster
from xpdctl.local.cluster import Cluster, is_this_machine, rendered_dir
from xpdctl.local.executor import LocalExecutor
from xpdctl.remote.executor import RemoteExecutor
from xpdctl.ssh.hostrun import HostShell, ssh_targets
from xpdctl.ssh.transport import LocalShellTransport, cluster_ssh
from xpdctl.units.state import Executor


def runs_locally(inv: Inventory) -> bool:
    """Every host is this machine and runs engines natively: :mod:`xpdctl.local` runs the cluster as
    supervised processes here, with no SSH, Ansible or systemd involved."""
    return all(is_this_machine(host.address) and runtime_of(inv, host) == "native" for host in inv.hosts)


def executor_for(plan, state_dir: Path) -> Executor:
    """The executor that runs this plan's services."""
    if runs_locally(plan.inventory):
        return LocalExecutor(state_dir)
    return RemoteExecutor(plan.inventory, rendered_dir(state_dir))


def host_shell_for(plan, record: bool = True) -> HostShell:
    """Runs a script on a host of this plan: this machine's shell where :func:`executor_for` runs
    services here, SSH otherwise (``record``: keep new host keys, for commands that change the cluster)."""
    inv = plan.inventory
    transport = LocalShellTransport() if runs_locally(inv) else cluster_ssh(inv.cluster, record=record)
    return HostShell(transport, ssh_targets(inv))


def open_cluster(inventory: Path) -> Cluster:
    """The cluster ``inventory`` names, with the executor that runs it."""
    return local_cluster.open_cluster(inventory, executor_for)
