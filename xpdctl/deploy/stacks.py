"""The engine stacks of a cluster's hosts, read where they run: the identity probe through each host's
shell (SSH, or this machine's for a local cluster), every host at once.

``up`` reads them before provisioning, so a host whose vLLM or NIXL is not what the cluster needs is
refused before any engine (re)starts; a host it cannot read yet (container runtime before its image was
pulled, an interpreter not installed yet) is read again once provisioning finished. ``upgrade`` reads the
pool's new stack before its first step (xpdctl/upgrade/rollout.py).
"""

from __future__ import annotations

from pathlib import Path

from xpdctl.deploy.where import host_shell_for
from xpdctl.errors import XpdError
from xpdctl.identity import EngineIdentity, parse_probe, probe_script
from xpdctl.identity.record import Reader, engine_hosts, holds_declared, judge, read_hosts, recorded
from xpdctl.plan import Plan
from xpdctl.ssh.hostrun import run_on_hosts

ROLES = ("prefill", "decode")
PROBE_TIMEOUT_S = 120.0  # the probe reads files only (~1 s); a busy host or a slow docker start gets more

def shell_reader(plan: Plan, record: bool = True, timeout_s: float = PROBE_TIMEOUT_S) -> Reader:
    """:data:`~xpdctl.identity.record.Reader` that runs the probe on each host through its shell
    (``record``: as in :func:`~xpdctl.deploy.where.host_shell_for`)."""
    shell = host_shell_for(plan, record)

    def read(prefixes: dict[str, list[str]]) -> dict[str, EngineIdentity | str]:
        scripts = {name: (shell.targets[name], probe_script(prefix)) for name, prefix in prefixes.items()}
        runs = run_on_hosts(shell.transport, scripts, timeout_s)
        answers: dict[str, EngineIdentity | str] = {}
        for name, run in runs.items():
            unreachable = run.problem(timeout_s)
            if unreachable:
                answers[name] = unreachable
                continue
            try:
                answers[name] = parse_probe(run.result.rc, run.result.stdout, run.result.stderr,
                                            f"{' '.join(prefixes[name])} on {name}")
            except XpdError as exc:
                answers[name] = exc.message
        return answers

    return read

def unreadable(hosts: dict[str, dict]) -> list[str]:
    return [name for name, entry in hosts.items() if "problem" in entry]

def known_hosts(state_dir: Path) -> dict[str, dict]:
    found = recorded(state_dir)
    return found["hosts"] if found else {}


def with_new_stacks(plan: Plan, state_dir: Path, roles: tuple[str, ...]) -> tuple[dict[str, dict], list[dict], list[str]]:
    """(hosts, pairs, problems) for an upgrade of ``roles``' pools: their hosts read now with the target
    plan's interpreter or image, the other pool's as the record has them (read now when it has none)."""
    read = shell_reader(plan)
    hosts = read_hosts(plan, read, roles=roles)
    others = tuple(r for r in ROLES if r not in roles)
    other = engine_hosts(plan, others)
    known = known_hosts(state_dir)
    hosts |= {n: known[n] for n in other if n not in hosts and n in known}
    missing = {n for n in other if n not in hosts}
    if missing:
        hosts |= read_hosts(plan, read, roles=others, only=missing)
    pairs, problems = judge(hosts, plan.settings.forced_backend, holds_declared(plan))
    return hosts, pairs, problems
