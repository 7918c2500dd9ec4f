"""The one way xpdctl changes services on hosts: a deployed render's files to their paths with their
modes, units enabled, started in order, reloaded when only their reloadable files changed, restarted
otherwise, stopped when the render dropped them; every host in parallel, idempotent, with a dry run
that shows diffs. ``up`` (after the host layer's playbooks), ``upgrade`` and ``down`` all call it.

The work is done by pyinfra (:mod:`xpdctl.remote.pyinfra_run`) in its own interpreter: pyinfra runs
hosts in parallel on gevent, which must monkey-patch the standard library before anything else
loads, and xpdctl's own threads and asyncio loops must not run patched.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from xpdctl.errors import ExecutionError
from xpdctl.remote.hostchanges import HostChanges, WantedUnit
from xpdctl.ssh.target import HostLink


class HostRequest(BaseModel):
    link: HostLink
    # The units the host should run (apply) in any order; None: `down`, stop every unit of the cluster.
    units: list[WantedUnit] | None = None


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


class ApplyOutcome(BaseModel):
    hosts: dict[str, HostOutcome]

    def problems(self) -> list[str]:
        return [f"{name}: {h.error}" for name, h in sorted(self.hosts.items()) if h.error]


def run_applier(request: ApplyRequest, timeout_s: float) -> ApplyOutcome:
    """Run the applier over ``request.hosts``; a host that fails is reported in the outcome with its
    name and what went wrong, and the other hosts carry on."""
    if not request.hosts:
        return ApplyOutcome(hosts={})
    try:
        done = subprocess.run([sys.executable, "-m", "xpdctl.remote.pyinfra_run"], input=request.model_dump_json(),
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ExecutionError(f"changing the services on {', '.join(sorted(request.hosts))} did not finish within "
                             f"{timeout_s:.0f} s; check the hosts, then run the command again") from None
    if done.returncode != 0 or not done.stdout.strip():
        said = done.stderr.strip()[-2000:] or f"exit status {done.returncode}"
        raise ExecutionError(f"the service applier failed before it reported: {said}")
    return ApplyOutcome.model_validate_json(done.stdout)


def apply_request(cluster: str, tree: Path | None, known_hosts: Path, links: dict[str, HostLink],
                  units: dict[str, list[WantedUnit]] | None, *, check: bool = False) -> ApplyRequest:
    """``units``: host -> units it should run (hosts not named run none); None: stop everything."""
    return ApplyRequest(
        cluster=cluster, tree=str(tree) if tree else None, known_hosts=str(known_hosts), check=check,
        hosts={h: HostRequest(link=link, units=None if units is None else units.get(h, [])) for h, link in links.items()},
    )
