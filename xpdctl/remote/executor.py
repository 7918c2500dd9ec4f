"""Runs a cluster's rendered units on its hosts through systemd, over SSH.

Changes go through the applier (:mod:`xpdctl.remote.applier`, pyinfra): every file of
``<deployed render>/hosts/<host>/`` at the same path on the host, modes kept (env files 0600),
units enabled. ``services`` reads the hosts with one SSH round trip per host (the state script, as
``status`` does), hosts in parallel: a rollout reads them often while it waits.

Every apply first reads the hosts the same quick way and hands pyinfra only those with something to
change: a rollout step changes one host of many, and pyinfra needs an SSH connection of its own to each
host it is given (a key exchange in Python, ~0.3 s of CPU each) where the quick read reuses the shared
one. The applier keeps its connections between applies, and uses a kept one only for a host the quick
read has just reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xpdctl.errors import ExecutionError, InputError
from xpdctl.inventory.schema import Inventory
from xpdctl.paths import known_hosts_file
from xpdctl.observe.drift import host_files
from xpdctl.remote.applier import ApplyOutcome, ApplyRequest, HostOutcome, apply_request, planned, run_applier
from xpdctl.remote.hostchanges import HostSnapshot, WantedUnit, files_hash
from xpdctl.remote.script import finished, parse_state, state_script
from xpdctl.remote.unitstate import unit_state
from xpdctl.render import MANIFEST, read_tree
from xpdctl.ssh.hostrun import run_on_hosts, ssh_targets
from xpdctl.ssh.sections import new_marker
from xpdctl.ssh.target import HostLink
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


def read_hosts(transport: SshTransport, cluster: str, links: dict[str, HostLink], timeout_s: float
               ) -> tuple[dict[str, HostSnapshot], list[str]]:
    """Every host's units and files, one SSH round trip each, in parallel; and why each host that
    could not be read was not."""
    marker = new_marker()
    runs = run_on_hosts(transport, {h: (t, state_script(marker, cluster)) for h, t in links.items()}, timeout_s)
    snapshots, problems = {}, []
    for host, run in runs.items():
        problem = run.problem(timeout_s)
        if problem is None and not finished(run.result.stdout, marker):
            said = run.result.stderr.strip()[-300:] or "no output"
            problem = (f"{host}: reading the state of its units failed ({said}); "
                       "check that the login can run systemctl as root")
        if problem:
            problems.append(problem)
        else:
            snapshots[host] = parse_state(run.result.stdout, marker)
    return snapshots, problems


def _read_and_plan(transport: SshTransport, request: ApplyRequest, timeout_s: float
                   ) -> dict[str, tuple[HostSnapshot, HostOutcome]]:
    snapshots, _ = read_hosts(transport, request.cluster, {h: r.link for h, r in request.hosts.items()},
                              min(timeout_s, 30.0))
    rendered = read_tree(Path(request.tree)) if request.tree else {}
    return {name: (snapshot, planned(request.hosts[name], snapshot, host_files(rendered, name)))
            for name, snapshot in snapshots.items()}


def preview(transport: SshTransport, request: ApplyRequest, timeout_s: float) -> dict[str, HostOutcome]:
    """What applying ``request`` would do on each host the quick read could read (nothing changes)."""
    return {name: outcome for name, (_, outcome) in _read_and_plan(transport, request, timeout_s).items()}


def apply_where_needed(transport: SshTransport, request: ApplyRequest, timeout_s: float) -> ApplyOutcome:
    """The applier on the hosts the quick read says need a change, or could not read (pyinfra then says
    why); the others are reported as they are, unchanged."""
    read = _read_and_plan(transport, request, timeout_s)
    settled = {name: outcome for name, (_, outcome) in read.items() if outcome.status == "ok"}
    busy = request.model_copy(update={"hosts": {
        h: r.model_copy(update={"snapshot": read[h][0] if h in read else None})
        for h, r in request.hosts.items() if h not in settled}})
    outcome = run_applier(busy, timeout_s)
    outcome.hosts.update(settled)
    return outcome


def rendered_request(inventory: Inventory, tree: Path, hosts: Sequence[str], *, check: bool = False,
                     record: bool = True, listed: Sequence[str] | None = None) -> ApplyRequest:
    """The render in ``tree`` for ``hosts``; ``listed``: only those units (and their files), the hosts'
    other units and files left as they are."""
    wanted: dict[str, list[WantedUnit]] = {h: [] for h in hosts}
    for s in rendered_services(tree, unique_names=False):
        if s.desired.host in wanted and (listed is None or s.desired.unit.name in listed):
            wanted[s.desired.host].append(wanted_unit(s.desired))
    links = {h: t for h, t in ssh_targets(inventory).items() if h in wanted}
    request = apply_request(inventory.cluster, tree, known_hosts_file(inventory.cluster, record=record), links, wanted,
                            check=check)
    for host in request.hosts.values():
        host.listed_only = listed is not None
    return request


def apply_rendered(inventory: Inventory, tree: Path, hosts: Sequence[str], *, check: bool = False,
                   record: bool = True, timeout_s: float = 300.0, listed: Sequence[str] | None = None) -> ApplyOutcome:
    """``up``'s services stage: the render in ``tree`` onto ``hosts`` (those whose host layer is
    ready); a host that fails is in the outcome, the others are changed. ``check``: nothing changes,
    the outcome says what would, with diffs. ``listed``: as :func:`rendered_request`."""
    return apply_where_needed(cluster_ssh(inventory.cluster, record=record),
                              rendered_request(inventory, tree, hosts, check=check, record=record, listed=listed),
                              timeout_s)


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
        outcome = apply_where_needed(self.transport, apply_request(
            self.cluster, self.deployed, known_hosts_file(self.cluster, record=True), targets, wanted),
            self.apply_timeout_s)
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
        snapshots, problems = read_hosts(self.transport, self.cluster, ssh_targets(self.inventory),
                                         self.state_timeout_s)
        found = []
        for host, snapshot in snapshots.items():
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
        outcome = apply_where_needed(self.transport, apply_request(
            self.cluster, None, known_hosts_file(self.cluster, record=True), targets, None), self.apply_timeout_s)
        raise_problems(outcome)
        # host:unit, since a unit name (the KV agent's) recurs on every host
        return sorted(f"{host}:{unit}" for host, o in outcome.hosts.items() for unit, state in o.units.items()
                      if state != "stopped")
