"""Runs a cluster's rendered units on its hosts through systemd, over SSH.

The host layout is the services role's (playbooks/roles/services): every file of
``<deployed render>/hosts/<host>/`` at the same path on the host, modes kept (env files 0600),
units enabled. Every call costs one SSH round trip per host, hosts in parallel; ``apply`` costs a
second one on the hosts it changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xpdctl.errors import ExecutionError, InputError
from xpdctl.inventory.schema import Inventory
from xpdctl.observe.drift import host_files, parse_hashes, parse_modes
from xpdctl.remote.decide import HostActions, host_actions, parse_records, running_hash, valid_record
from xpdctl.remote.script import apply_script, failures, finished, state_script
from xpdctl.remote.unitstate import parse_show, unit_state
from xpdctl.render import HOSTS, MANIFEST, RenderedFile, read_tree
from xpdctl.ssh.hostrun import run_on_hosts, ssh_targets
from xpdctl.ssh.sections import new_marker, split_sections
from xpdctl.ssh.target import HostLink
from xpdctl.ssh.transport import SshTransport, cluster_ssh
from xpdctl.units.changes import decide
from xpdctl.units.rendered import rendered_services
from xpdctl.units.state import Change, DesiredUnit, UnitState

# `down` stops what clients reach first, engines last (as the local executor does).
STOP_ORDER = {"router": 0, "kv-agent": 1}
_ROLE_OF_NAME = re.compile(r"^(?P<role>.+?)(-\d+)?(-next)?$")


@dataclass
class HostState:
    units: dict[str, UnitState]  # the cluster's units on the host, with the content hash each runs
    recorded: dict[str, str]  # unit -> hash, where the host's record still says what runs
    present: dict[str, str | None]  # sha256 of every xpdctl-owned file on the host
    modes: dict[str, int]


def _entry_files(entry: dict, host: str) -> list[str]:
    prefix = f"{HOSTS}/{host}"
    return [entry[k][len(prefix):] for k in ("unit", "env_file", "config") if entry.get(k, "").startswith(prefix)]


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
        files, targets = self._render()
        desired: dict[str, dict[str, str]] = {name: {} for name in targets}
        for d in units:
            if d.host not in desired:
                raise InputError(f"unit {d.unit.name} is for host {d.host}, which the inventory does not list; "
                                 "render the cluster again from this inventory")
            desired[d.host][d.unit.name] = d.unit.content_hash
        states = self._states(files, targets)
        changes: dict[str, Change] = {}
        actions: dict[str, HostActions] = {}
        for host, state in states.items():
            host_changes = decide(desired[host], state.units)
            for name, change in host_changes.items():  # a name on several hosts (kv-agent): what changed wins
                if changes.get(name, "unchanged") == "unchanged":
                    changes[name] = change
            actions[host] = host_actions(host_changes, desired[host], state.recorded, host_files(files, host),
                                         state.present, state.modes)
        self._act(files, targets, {h: a for h, a in actions.items() if a.needed()})
        return changes

    def services(self) -> list[UnitState]:
        files, targets = self._render()
        return [u for state in self._states(files, targets).values() for u in state.units.values()]

    def down(self) -> list[str]:
        files, targets = self._render()
        states = self._states(files, targets)
        actions = {}
        for host, state in states.items():
            order = sorted(state.units.values(), key=lambda u: (STOP_ORDER.get(u.role, 2), u.name))
            if order:
                actions[host] = HostActions(stop=[u.name for u in order])
        self._act(files, targets, actions)
        # host:unit, since a unit name (the KV agent's) recurs on every host
        return sorted(f"{u.host}:{u.name}" for s in states.values() for u in s.units.values() if u.state != "stopped")

    # -- helpers -------------------------------------------------------------------------------

    def _render(self) -> tuple[dict[str, RenderedFile], dict[str, HostLink]]:
        """The deployed render (none yet: no files, no services) and one SSH target per inventory host."""
        files = read_tree(self.deployed) if (self.deployed / MANIFEST).exists() else {}
        return files, ssh_targets(self.inventory)

    def _states(self, files: dict[str, RenderedFile], targets: dict[str, HostLink]) -> dict[str, HostState]:
        manifest = json.loads(files[MANIFEST].content) if MANIFEST in files else {}
        entries = {h: {s["name"]: s for s in e.get("services", [])} for h, e in manifest.get("hosts", {}).items()}
        marker = new_marker()
        scripts = {h: (t, state_script(marker, self.cluster, sorted(entries.get(h, {})))) for h, t in targets.items()}
        runs = run_on_hosts(self.transport, scripts, self.state_timeout_s)
        problems = []
        for host, run in runs.items():
            problem = run.problem(self.state_timeout_s)
            if problem is None and not finished(run.result.stdout, marker):
                said = run.result.stderr.strip()[-300:] or "no output"
                problem = (f"{host}: reading the state of its units failed ({said}); "
                           "check that the login can run systemctl as root")
            if problem:
                problems.append(problem)
        if problems:
            raise ExecutionError("; ".join(problems))
        deployed_hashes = {(s.desired.host, s.desired.unit.name): s.desired.unit.content_hash
                           for s in (rendered_services(self.deployed, unique_names=False) if entries else [])}
        return {host: self._host_state(host, split_sections(run.result.stdout, marker), files, entries.get(host, {}),
                                       deployed_hashes) for host, run in runs.items()}

    def _host_state(self, host: str, sections: dict, files: dict[str, RenderedFile], entries: dict[str, dict],
                    deployed_hashes: dict[tuple[str, str], str]) -> HostState:
        """One host's state script output, with the content hash each of its units runs with."""
        records = parse_records(sections["recorded"].text)
        present = parse_hashes(sections["hashes"].text)
        expected = host_files(files, host)
        units = {}
        for name, props in parse_show(sections["units"].text).items():
            if props.get("LoadState") == "not-found":
                continue  # listed in the render and not installed yet, or a record left of a removed unit
            entry = entries.get(name)
            role = entry["role"] if entry else _ROLE_OF_NAME.match(name.removeprefix(f"xpd-{self.cluster}-"))["role"]
            recorded = valid_record(records.get(name), props.get("MainPID", ""))
            digest = running_hash(recorded, _entry_files(entry, host) if entry else [], expected, present,
                                  deployed_hashes.get((host, name)))
            units[name] = unit_state(name, host, role, props, digest)
        recorded = {n: u.content_hash for n, u in units.items() if valid_record(records.get(n), u.pid)}
        return HostState(units=units, recorded=recorded, present=present, modes=parse_modes(sections["modes"].text))

    def _act(self, files: dict[str, RenderedFile], targets: dict[str, HostLink],
             actions: dict[str, HostActions]) -> None:
        marker = new_marker()
        scripts = {}
        for host, a in actions.items():
            contents = {p: files[f"{HOSTS}/{host}{p}"] for p in a.write}
            scripts[host] = (targets[host], apply_script(marker, self.cluster, a, contents))
        runs = run_on_hosts(self.transport, scripts, self.apply_timeout_s)
        problems = []
        for host, run in runs.items():
            problem = run.problem(self.apply_timeout_s)
            if problem:
                problems.append(problem)
                continue
            for action, what, said in failures(run.result.stdout, marker):
                detail = f": {said.splitlines()[-1]}" if said else ""
                problems.append(f"{host}: {action} {what} failed{detail} (see `journalctl -u {what}` there)"
                                if action in ("start", "restart", "stop", "enable") else
                                f"{host}: {action} {what} failed{detail}")
            if not finished(run.result.stdout, marker):
                said = run.result.stderr.strip()[-300:] or "no output"
                problems.append(f"{host}: the change stopped half-way ({said})")
        if problems:
            raise ExecutionError("; ".join(problems) + ". Fix the cause on the host, then run the command again")
