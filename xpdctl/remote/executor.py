"""Runs a cluster's rendered units on its hosts through systemd, over SSH.

Changes go through the applier (:mod:`xpdctl.remote.applier`, pyinfra): every file of
``<deployed render>/hosts/<host>/`` at the same path on the host, modes kept (env files 0600),
units enabled. ``services`` reads the hosts with one SSH round trip per host (the state script, as
``status`` does), hosts in parallel: a rollout reads them often while it waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xpdctl.errors import ExecutionError, InputError
from xpdctl.inventory.schema import Inventory
from xpdctl.paths import known_hosts_file
from xpdctl.remote.applier import ApplyOutcome, apply_request, run_applier
from xpdctl.remote.hostchanges import WantedUnit, files_hash
from xpdctl.remote.script import finished, parse_state, state_script
from xpdctl.remote.unitstate import unit_state
from xpdctl.render import MANIFEST
from xpdctl.ssh.hostrun import run_on_hosts, ssh_targets
from xpdctl.ssh.sections import new_marker
from xpdctl.ssh.transport import SshTransport, cluster_ssh
from xpdctl.units.rendered import rendered_services
from xpdctl.units.state import Change, DesiredUnit, UnitState


def wanted_unit(desired: DesiredUnit) -> WantedUnit:
    unit = desired.unit
    return WantedUnit(name=unit.name, role=desired.role, files=unit.files, reload_files=unit.reload_files)


def raise_problems(outcome: ApplyOutcome) -> None:
    problems = outcome.problems()
    if problems:
        raise ExecutionError("; ".join(problems) + ". Fix the cause on the host, then run the command again "
                             "(the other hosts were changed)")


def apply_rendered(inventory: Inventory, tree: Path, hosts: Sequence[str], *, check: bool = False,
                   record: bool = True, timeout_s: float = 300.0) -> ApplyOutcome:
    """``up``'s services stage: the render in ``tree`` onto ``hosts`` (those whose host layer is
    ready); a host that fails is in the outcome, the others are changed. ``check``: nothing changes,
    the outcome says what would, with diffs."""
    wanted: dict[str, list[WantedUnit]] = {h: [] for h in hosts}
    for s in rendered_services(tree, unique_names=False):
        if s.desired.host in wanted:
            wanted[s.desired.host].append(wanted_unit(s.desired))
    links = {h: t for h, t in ssh_targets(inventory).items() if h in wanted}
    return run_applier(apply_request(inventory.cluster, tree, known_hosts_file(inventory.cluster, record=record),
                                     links, wanted, check=check), timeout_s)


class RemoteExecutor:
    def __init__(self, inventory: Inventory, deployed: Path, *, transport: SshTransport | None = None,
                 state_timeout_s: float = 30.0, apply_timeout_s: float = 300.0):
        """``deployed``: the cluster's deployed render (``<state dir>/rendered``), read at every call."""
        self.inventory = inventory
        self.cluster = inventory.cluster
        self.deployed = deployed
        self.transport = transport or cluster_ssh(self.cluster, record=True)
        self.state_timeout_s = state_timeout_s
        self.apply_timeout_s = apply_timeout_s

    # -- Executor ------------------------------------------------------------------------------

    def apply(self, units: Sequence[DesiredUnit]) -> dict[str, Change]:
        targets = ssh_targets(self.inventory)
        wanted: dict[str, list[WantedUnit]] = {name: [] for name in targets}
        for d in units:
            if d.host not in wanted:
                raise InputError(f"unit {d.unit.name} is for host {d.host}, which the inventory does not list; "
                                 "render the cluster again from this inventory")
            wanted[d.host].append(wanted_unit(d))
        outcome = run_applier(apply_request(self.cluster, self.deployed, known_hosts_file(self.cluster, record=True),
                                            targets, wanted), self.apply_timeout_s)
        raise_problems(outcome)
        changes: dict[str, Change] = {}
        for host in outcome.hosts.values():
            for name in host.changes.stop:
                changes.setdefault(name, "stopped")
            for name, change in host.changes.units.items():  # a name on several hosts (kv-agent): what changed wins
                if changes.get(name, "unchanged") == "unchanged":
                    changes[name] = change
        return changes

    def services(self) -> list[UnitState]:
        deployed = {(s.desired.host, s.desired.unit.name): s.desired
                    for s in (rendered_services(self.deployed, unique_names=False)
                              if (self.deployed / MANIFEST).exists() else [])}
        marker = new_marker()
        scripts = {h: (t, state_script(marker, self.cluster)) for h, t in ssh_targets(self.inventory).items()}
        runs = run_on_hosts(self.transport, scripts, self.state_timeout_s)
        problems, found = [], []
        for host, run in runs.items():
            problem = run.problem(self.state_timeout_s)
            if problem is None and not finished(run.result.stdout, marker):
                said = run.result.stderr.strip()[-300:] or "no output"
                problem = (f"{host}: reading the state of its units failed ({said}); "
                           "check that the login can run systemctl as root")
            if problem:
                problems.append(problem)
                continue
            snapshot = parse_state(run.result.stdout, marker)
            shas = {p: f.sha256 for p, f in snapshot.files.items()}
            for name, props in snapshot.units.items():
                desired = deployed.get((host, name))
                digest = files_hash(wanted_unit(desired), shas) if desired else ""
                found.append(unit_state(name, host, desired.role if desired else "", props, digest))
        if problems:
            raise ExecutionError("; ".join(problems))
        return found

    def down(self) -> list[str]:
        targets = ssh_targets(self.inventory)
        outcome = run_applier(apply_request(self.cluster, None, known_hosts_file(self.cluster, record=True),
                                            targets, None), self.apply_timeout_s)
        raise_problems(outcome)
        # host:unit, since a unit name (the KV agent's) recurs on every host
        return sorted(f"{host}:{unit}" for host, o in outcome.hosts.items() for unit, state in o.units.items()
                      if state != "stopped")
