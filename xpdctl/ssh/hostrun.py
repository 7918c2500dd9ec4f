"""One shell script per host over SSH, every host at once, with bounded waits.

Through :mod:`xpdctl.ssh.transport`, as ``status`` does: the cluster's known_hosts, BatchMode,
ConnectTimeout and shared connections, so a rollout's frequent state reads skip the handshake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from xpdctl.inventory.schema import Inventory
from xpdctl.ssh.target import HostLink, SshTarget
from xpdctl.ssh.transport import LocalShellTransport, RunResult, SshTransport


@dataclass
class HostRun:
    target: HostLink
    result: RunResult

    def problem(self, timeout_s: float) -> str | None:
        """Why the script did not run to its end on the host, for a person; None when it did."""
        t = self.target
        where = f"{t.name} ({t.ssh.user}@{t.address}:{t.ssh.port})"
        if self.result.rc is None:
            return (f"{where} did not finish within {timeout_s:.0f} s; check the host (`ssh {t.ssh.user}@{t.address}`) "
                    "and run the command again")
        if self.result.rc == 255:
            return (f"{where} is unreachable over SSH ({self.result.stderr.strip() or 'ssh failed'}); bring it back "
                    "or fix the inventory's ssh settings, then run the command again")
        return None


def run_on_hosts(transport: SshTransport, scripts: dict[str, tuple[HostLink, str]], timeout_s: float
                 ) -> dict[str, HostRun]:
    """host name -> what its script did; the scripts run in parallel, each bounded by ``timeout_s``."""

    async def all_hosts() -> list[RunResult]:
        return await asyncio.gather(*(transport.run(t, script, timeout_s) for t, script in scripts.values()))

    results = asyncio.run(all_hosts()) if scripts else []
    return {name: HostRun(target, result) for (name, (target, _)), result in zip(scripts.items(), results)}


def ssh_targets(inventory: Inventory) -> dict[str, HostLink]:
    """host name -> where and how to reach it, from the inventory (its host or default ssh settings)."""
    targets = {}
    for host in inventory.hosts:
        ssh = host.ssh or inventory.defaults.ssh
        targets[host.name] = HostLink(name=host.name, address=host.address,
                                        ssh=SshTarget(user=ssh.user, port=ssh.port, key=ssh.key))
    return targets


@dataclass
class HostShell:
    """Runs a script on one host of a cluster: over SSH, or with this machine's shell for a cluster
    whose hosts are all this machine (:func:`xpdctl.deploy.where.host_shell_for` picks)."""

    transport: SshTransport | LocalShellTransport
    targets: dict[str, HostLink]

    def run(self, host: str, script: str, timeout_s: float) -> HostRun:
        target = self.targets[host]
        return HostRun(target, asyncio.run(self.transport.run(target, script, timeout_s)))
