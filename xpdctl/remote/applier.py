"""The one way xpdctl changes services on hosts: a deployed render's files to their paths with their
modes, units enabled, started in order, reloaded when only their reloadable files changed, restarted
otherwise, stopped when the render dropped them; every host in parallel, idempotent, with a dry run
that shows diffs. ``up`` (after the host layer's playbooks), ``upgrade`` and ``down`` all call it.

The work is done by pyinfra (:mod:`xpdctl.remote.pyinfra_run`) in its own interpreter (one per xpdctl
process, kept between applies): pyinfra runs hosts in parallel on gevent, which must monkey-patch the
standard library before anything else loads, and xpdctl's own threads and asyncio loops must not run
patched.
"""

from __future__ import annotations

import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from xpdctl.errors import ExecutionError
from xpdctl.observe.drift import ExpectedFile
from xpdctl.remote.hostchanges import HostChanges, HostSnapshot, WantedUnit, host_changes, stop_rank
from xpdctl.remote.unitstate import proc_state
from xpdctl.ssh.target import HostLink


class HostRequest(BaseModel):
    link: HostLink
    # The units the host should run (apply) in any order; None: `down`, stop every unit of the cluster.
    units: list[WantedUnit] | None = None
    # Only the listed units and their files: the host's other units and files are left as they are (a
    # router's stand-in started beside it, deploy/handoff.py).
    listed_only: bool = False
    # What the executor's quick read found on the host a moment ago: the applier plans from it instead of
    # reading the host again, and may use a connection it kept to the host from an earlier apply (one to
    # a host that went away would hang instead of failing). None: the applier connects and reads.
    snapshot: HostSnapshot | None = None


class ApplyRequest(BaseModel):
    cluster: str
    tree: str | None  # the render whose files the hosts get; None: no render (`down` only)
    known_hosts: str
    check: bool = False
    connect_timeout_s: int = 10
    hosts: dict[str, HostRequest]


class HostOutcome(BaseModel):
    status: Literal["ok", "changed", "failed", "unreachable"]
    changes: HostChanges = HostChanges()
    units: dict[str, str] = {}  # the cluster's units on the host before the change, with their state
    # What a dry run would write, as a unified diff per path (a secret's file says only that it differs).
    diffs: dict[str, str] = {}
    error: str | None = None


def planned(host: HostRequest, snapshot: HostSnapshot, expected: dict[str, ExpectedFile]) -> HostOutcome:
    """What the apply does on a host that holds ``snapshot``, before anything changes there (``expected``:
    the render's files for the host); the applier's worker and the executor's pre-read both ask this."""
    if host.units is None:  # down: every unit of the cluster stops, its files stay
        changes = HostChanges(stop=sorted(snapshot.units, key=lambda u: (stop_rank(u), u)))
    elif host.listed_only:
        names = {u.name for u in host.units}
        paths = {p for u in host.units for p in (*u.files, *u.reload_files)}
        mine = HostSnapshot(units={n: p for n, p in snapshot.units.items() if n in names},
                            files={p: f for p, f in snapshot.files.items() if p in paths})
        changes = host_changes(host.units, {p: f for p, f in expected.items() if p in paths}, mine)
    else:
        changes = host_changes(host.units, expected, snapshot)
    return HostOutcome(status="changed" if changes.needed() else "ok", changes=changes,
                       units={u: proc_state(p) for u, p in snapshot.units.items()})


class ApplyOutcome(BaseModel):
    hosts: dict[str, HostOutcome]

    def problems(self) -> list[str]:
        return [f"{name}: {h.error}" for name, h in sorted(self.hosts.items()) if h.error]


class _Worker:
    """The applier's interpreter, started at the first apply and kept while xpdctl runs: a rollout
    applies two or three times per instance, and each start costs pyinfra's, paramiko's and gevent's
    imports (1.0 s of CPU, measured with `time python -c "import xpdctl.remote.pyinfra_run"`). One
    request and one answer per line; it exits when xpdctl closes its stdin (xpdctl's exit)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stderr = None

    def ask(self, request: str, timeout_s: float) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.stderr = tempfile.TemporaryFile()
            self.proc = subprocess.Popen([sys.executable, "-m", "xpdctl.remote.pyinfra_run"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        proc = self.proc
        try:
            proc.stdin.write(request + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: its stderr says why, below
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            proc.kill()
            proc.wait()
            self.proc = None
            raise TimeoutError
        answer = proc.stdout.readline()
        if not answer:
            proc.wait()
            self.stderr.seek(0)
            said = self.stderr.read().decode(errors="replace").strip()[-2000:] or f"exit status {proc.returncode}"
            self.proc = None
            raise ExecutionError(f"the service applier failed before it reported: {said}")
        return answer


_WORKER = _Worker()


def run_applier(request: ApplyRequest, timeout_s: float) -> ApplyOutcome:
    """Run the applier over ``request.hosts``; a host that fails is reported in the outcome with its
    name and what went wrong, and the other hosts carry on."""
    if not request.hosts:
        return ApplyOutcome(hosts={})
    try:
        answer = _WORKER.ask(request.model_dump_json(), timeout_s)
    except TimeoutError:
        raise ExecutionError(f"changing the services on {', '.join(sorted(request.hosts))} did not finish within "
                             f"{timeout_s:.0f} s; check the hosts, then run the command again") from None
    return ApplyOutcome.model_validate_json(answer)


def apply_request(cluster: str, tree: Path | None, known_hosts: Path, links: dict[str, HostLink],
                  units: dict[str, list[WantedUnit]] | None, *, check: bool = False) -> ApplyRequest:
    """``units``: host -> units it should run (hosts not named run none); None: stop everything."""
    return ApplyRequest(
        cluster=cluster, tree=str(tree) if tree else None, known_hosts=str(known_hosts), check=check,
        hosts={h: HostRequest(link=link, units=None if units is None else units.get(h, [])) for h, link in links.items()},
    )
