"""`up`'s services stage with routers that restart without refusing a connection or failing a request.

A change that restarts a running router (a new release or image, its environment) is handed off on
the router's own host: a stand-in, the same router named ``<router>-handoff``
(:func:`xpdctl.plan.router_twins`), starts beside it on the same port (routers listen with
SO_REUSEPORT, :mod:`xpdctl.aioserve`); once both listen, the ordinary apply restarts the router
(systemd stops it: it closes its listening socket and finishes the requests it holds, aiohttp's
graceful shutdown; then starts the new one), and once that listens the stand-in stops the same way
and its files go. The port accepts connections throughout, so keepalived's /health check never
fails and ``router.vip`` stays where it is.

Why the address is not moved away first: a VRRP address that moves leaves the TCP connections on
the old holder behind. The client's next segment of such a connection reaches the new holder, which
has no such connection and answers with a reset (RFC 9293, section 3.5.2), so every request in flight
there would fail. A restart in place has no such moment.

A router started before its listening socket had SO_REUSEPORT (xpdctl before 2026-12-02) refuses the
stand-in its port; the stand-in then never listens, and that one restart is the ordinary one.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import time
from pathlib import Path

from xpdctl.errors import ExecutionError
from xpdctl.inventory import LoadedInventory
from xpdctl.plan import HostPlan, build_plan, router_twins
from xpdctl.remote.applier import ApplyOutcome
from xpdctl.remote.executor import apply_rendered, preview, rendered_request
from xpdctl.render import read_tree, render_files, write_tree
from xpdctl.ssh.hostrun import run_on_hosts, ssh_targets
from xpdctl.ssh.transport import cluster_ssh
from xpdctl.units.tree import copy_service, manifest_of
from xpdctl.verify.health import Progress

SUFFIX = "-handoff"
LISTEN_TIMEOUT_S = 60.0  # a router's start (an interpreter, its imports; on container hosts `docker run`)
POLL_S = 0.5


def restarting_routers(loaded: LoadedInventory, tree: Path, hosts: list[str], *, record: bool,
                       timeout_s: float) -> dict[str, str]:
    """Router host -> router unit, for each running router that applying ``tree`` would restart."""
    inv = loaded.inventory
    routers = [h for h in inv.router.hosts if h in hosts]
    if not routers:
        return {}
    manifest = manifest_of(read_tree(tree))
    names = {h: next(s["name"] for s in manifest["hosts"][h]["services"] if s["role"] == "router") for h in routers}
    outcomes = preview(cluster_ssh(inv.cluster, record=record),
                       rendered_request(inv, tree, routers, record=record), timeout_s)
    return {h: names[h] for h, o in outcomes.items()
            if o.changes.units.get(names[h]) == "restarted" and o.units.get(names[h]) == "running"}


def _with_stand_ins(loaded: LoadedInventory, tree: Path, routers: dict[str, str], into: Path) -> list[str]:
    """Write ``tree`` plus a stand-in for each of ``routers`` to ``into``; the stand-ins' unit names."""
    plan = build_plan(loaded, os.environ)  # the secrets the router's env file holds, as render_now reads them
    twins = [t for t in router_twins(loaded, os.environ, SUFFIX) if t.host in routers]
    alone = dataclasses.replace(plan, hosts={
        t.host: HostPlan(name=t.host, address=plan.hosts[t.host].address, services=[t]) for t in twins})
    files, extra = read_tree(tree), render_files(alone)
    for twin in twins:  # one name on every router host
        files = copy_service(files, extra, twin.name, twin.host)
    write_tree(files, into)
    return [t.name for t in twins]


def _listeners(loaded: LoadedInventory, hosts: list[str], *, record: bool) -> dict[str, int]:
    """How many sockets listen on the router's port on each host (two while a handoff overlaps)."""
    inv = loaded.inventory
    script = f"ss -Hltn {shlex.quote(f'sport = :{inv.router.port}')} | wc -l"
    links = ssh_targets(inv)
    runs = run_on_hosts(cluster_ssh(inv.cluster, record=record), {h: (links[h], script) for h in hosts}, 10.0)
    counts = {}
    for host, run in runs.items():
        out = run.result.stdout.strip()
        counts[host] = int(out) if run.result.rc == 0 and out.isdigit() else 0
    return counts


def _wait_listening(loaded: LoadedInventory, hosts: list[str], what: str, *, record: bool) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while True:
        counts = _listeners(loaded, hosts, record=record)
        short = sorted(h for h, n in counts.items() if n < 2)
        if not short:
            return
        if time.monotonic() > deadline:
            raise ExecutionError(
                f"{what} did not listen beside the router on {', '.join(short)} within {LISTEN_TIMEOUT_S:.0f} s "
                f"(see `journalctl -u` of it there)")
        time.sleep(POLL_S)


def apply_with_handoff(loaded: LoadedInventory, tree: Path, hosts: list[str], *, check: bool, record: bool,
                       timeout_s: float, progress: Progress) -> tuple[ApplyOutcome, list[str]]:
    """Apply ``tree`` to ``hosts`` (as :func:`xpdctl.remote.executor.apply_rendered`), handing each router
    that restarts off to a stand-in first; the outcome of the apply and what went wrong with a handoff
    (the router was then restarted the ordinary way)."""
    inv = loaded.inventory
    routers = {} if check else restarting_routers(loaded, tree, hosts, record=record, timeout_s=timeout_s)
    if not routers:
        return apply_rendered(inv, tree, hosts, check=check, record=record, timeout_s=timeout_s), []
    where = ", ".join(sorted(routers))
    staged = tree.with_name(tree.name + SUFFIX)
    problems: list[str] = []
    try:
        stand_ins = _with_stand_ins(loaded, tree, routers, staged)
        progress.show(f"router handoff: starting a stand-in router beside the router on {where}")
        started = apply_rendered(inv, staged, list(routers), record=record, timeout_s=timeout_s, listed=stand_ins)
        failed = [f"{h}: {o.error}" for h, o in started.hosts.items() if o.error]
        if failed:
            raise ExecutionError("starting the stand-in router failed: " + "; ".join(failed))
        _wait_listening(loaded, list(routers), "the stand-in router", record=record)
        progress.done(f"router handoff: stand-ins listen on {where}; restarting the routers")
        outcome = apply_rendered(inv, staged, hosts, record=record, timeout_s=timeout_s)
        _wait_listening(loaded, list(routers), "the restarted router", record=record)
    except ExecutionError as exc:
        problems.append(f"router handoff on {where}: {exc.message}; the routers were restarted without one "
                        "(requests in flight on them may have failed)")
        progress.done(problems[-1])
        outcome = None
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    # The stand-ins go (each finishes its requests first): the render as it is, on the router hosts.
    final = apply_rendered(inv, tree, hosts if outcome is None else list(routers), record=record, timeout_s=timeout_s)
    if outcome is None:
        return final, problems
    for host, o in outcome.hosts.items():  # what the cluster's own units went through, without the stand-ins
        o.changes.units = {u: c for u, c in o.changes.units.items() if not u.endswith(SUFFIX)}
        o.changes.enable = [u for u in o.changes.enable if not u.endswith(SUFFIX)]
        o.changes.write = [p for p in o.changes.write if SUFFIX not in p]
        o.units = {u: state for u, state in o.units.items() if not u.endswith(SUFFIX)}
        if host in final.hosts and final.hosts[host].error:
            o.error = final.hosts[host].error
    progress.done(f"router handoff: done on {where}")
    return outcome, problems
