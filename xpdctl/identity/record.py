"""Read the engine stacks of a cluster's hosts, keep them in its state, and refuse what cannot work.

Natively every engine of a host runs ``engine.python`` (each host has its own install at that path); in
containers, the vendor's image, which the probe runs through ``docker run`` (``--pull=never``: a host
that has not pulled it yet cannot be read before provisioning, see xpdctl/deploy/stacks.py). Who runs
the probe is the caller's ``read`` (this machine's shell here, SSH for hosts); this module decides what
the answers mean. The record (``<state dir>/<cluster>/identity.json``) is what ``check``, ``plan``,
``status`` and ``upgrade`` compare later, without starting anything.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from collections.abc import Callable
from pathlib import Path

from xpdctl.errors import InputError, XpdError
from xpdctl.identity import EngineIdentity, Factor, compare_pools, read_identity
from xpdctl.inventory.topology import hosts_by_name, pool, runtime_of, vllm_version_of
from xpdctl.plan import Plan
from xpdctl.status_model import HandshakeFactor, HostStack, NixlModule, StackPair, Stacks

RECORD = "identity.json"
DOCKER_PYTHON = ("docker", "run", "--rm", "-i", "--pull=never", "--entrypoint=python3")
ROLES = ("prefill", "decode")

# host name -> the command that starts its engines' Python  =>  host name -> its stack, or why unread
Reader = Callable[[dict[str, list[str]]], dict[str, EngineIdentity | str]]


def reads_stacks(plan: Plan) -> bool:
    """Whether the engines' stacks hold vLLM to compare: vLLM engines, or native engines of any server
    (``engine.python`` is the interpreter with vLLM, and the KV agents load NIXL from it); simulator
    engines in containers run the xpdctl image, which promises no vLLM."""
    inv = plan.inventory
    by_name = hosts_by_name(inv)
    return inv.engine.server == "vllm" or all(runtime_of(inv, by_name[n]) == "native" for n in engine_hosts(plan))


def prefix_of(plan: Plan, host_name: str) -> list[str]:
    """The command that starts the Python of ``host_name``'s engines (the probe's stdin is the script)."""
    inv = plan.inventory
    host = hosts_by_name(inv)[host_name]
    if runtime_of(inv, host) == "container":
        return [*DOCKER_PYTHON, inv.engine.images[host.vendor or ""]]
    return [inv.engine.python or ""]


def read_here(prefixes: dict[str, list[str]]) -> dict[str, EngineIdentity | str]:
    """:data:`Reader` for hosts that are this machine: one probe per distinct command."""
    seen: dict[tuple[str, ...], EngineIdentity | str] = {}
    for prefix in map(tuple, prefixes.values()):
        if prefix not in seen:
            try:
                seen[prefix] = read_identity(list(prefix))
            except XpdError as exc:
                seen[prefix] = exc.message
    return {host: seen[tuple(prefix)] for host, prefix in prefixes.items()}


def engine_hosts(plan: Plan, roles: tuple[str, ...] = ROLES) -> dict[str, list[str]]:
    """host -> the engine roles it runs (of ``roles``), in pool order."""
    found: dict[str, list[str]] = {}
    for role in roles:
        for name in pool(plan.inventory, role).hosts:
            found.setdefault(name, []).append(role)
    return found


def read_hosts(plan: Plan, read: Reader, roles: tuple[str, ...] = ROLES,
               only: set[str] | None = None) -> dict[str, dict]:
    """{host: {"roles", "vendor", "declared", "command", "identity" (a dump) or "problem"}} for the
    engine hosts of ``roles`` (``only`` these, when given)."""
    inv = plan.inventory
    by_name = hosts_by_name(inv)
    wanted = {n: r for n, r in engine_hosts(plan, roles).items() if only is None or n in only}
    prefixes = {name: prefix_of(plan, name) for name in wanted}
    answers = read(prefixes)
    hosts = {}
    for name, host_roles in wanted.items():
        answer = answers[name]
        entry = {"roles": host_roles, "vendor": by_name[name].vendor, "declared": vllm_version_of(inv, by_name[name]),
                 "command": prefixes[name]}  # fmt: skip
        if isinstance(answer, EngineIdentity):
            entry["identity"] = answer.model_dump()
        else:
            entry["problem"] = answer
        hosts[name] = entry
    return hosts


def _stack_key(entry: dict) -> str:
    return json.dumps([entry["vendor"], entry["identity"]], sort_keys=True)


def holds_declared(plan: Plan) -> bool:
    """Whether the declared vLLM must be the stack's: yes for vLLM engines; a simulator engine loads no
    vLLM, its ``vllm_version`` is the release it stands in for (its stacks are still compared with each
    other: the KV agents load NIXL from them)."""
    return plan.inventory.engine.server == "vllm"


def judge(hosts: dict[str, dict], forced_backend: str | None, declared: bool = True) -> tuple[list[dict], list[str]]:
    """Pairs of distinct prefill and decode stacks with their factors, and the problems that stop a
    change: a host whose stack cannot be read, one whose vLLM is not what the inventory says, and a
    factor on which a prefill stack and a decode stack cannot shake hands. ``declared`` false (simulator
    engines, :func:`holds_declared`): no declaration to hold, and NIXL is the KV agent's import."""
    problems = []
    read = {}
    for name, entry in hosts.items():
        if "problem" in entry:
            problems.append(f"host {name}: {entry['problem']}")
            continue
        read[name] = entry
        found = entry["identity"]["vllm_version"]
        if declared and found != entry["declared"]:
            problems.append(
                f"host {name}: the inventory says vLLM {entry['declared']} but {' '.join(entry['command'])} "
                f"reports {found}; install the declared release there, or set hosts[].vllm_version (or "
                "engine.vllm_version) to what the stack reports, so check compares the real strings"
            )
    sides = {role: {} for role in ROLES}  # one host per distinct stack
    for name, entry in read.items():
        for role in entry["roles"]:
            sides[role].setdefault(_stack_key(entry), name)
    pairs = []
    for p_name in sides["prefill"].values():
        for d_name in sides["decode"].values():
            p, d = read[p_name], read[d_name]
            factors = compare_pools(EngineIdentity.model_validate(p["identity"]), p["vendor"],
                                    EngineIdentity.model_validate(d["identity"]), d["vendor"], forced_backend,
                                    engines_load_vllm=declared)
            pairs.append({"prefill": p_name, "decode": d_name, "factors": [f.__dict__ for f in factors]})
            problems += [f"prefill {p_name} -> decode {d_name}: {f.line()}" for f in factors if not f.ok]
    return pairs, problems


def keep(state_dir: Path, hosts: dict[str, dict], pairs: list[dict]) -> None:
    # A real `up` records here, and the first one of a cluster runs before anything else made the dir.
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {"read_at": time.time(), "hosts": hosts, "pairs": pairs}
    (state_dir / RECORD).write_text(json.dumps(data, indent=2))


def record(plan: Plan, state_dir: Path, read: Reader = read_here) -> list[Factor]:
    """Read, keep and judge the cluster's engine stacks; InputError when they cannot serve PD together.
    Returns the factors of the first pair (what progress lines show)."""
    hosts = read_hosts(plan, read)
    pairs, problems = judge(hosts, plan.settings.forced_backend, holds_declared(plan))
    keep(state_dir, hosts, pairs)
    if problems:
        raise InputError("the engine stacks cannot serve PD together: " + "; ".join(problems))
    return [Factor(**f) for f in pairs[0]["factors"]] if pairs else []


def recorded(state_dir: Path) -> dict | None:
    path = state_dir / RECORD
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if "hosts" in data else None  # a record of the per-pool form before hosts were read alone


def describe(found: dict, heading: str) -> list[str]:
    """A record for people: each host's stack, then each pair of distinct stacks factor by factor."""
    when = datetime.fromtimestamp(found["read_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{heading} ({when}):"]
    for name, side in found["hosts"].items():
        stack = f"vLLM {side['identity']['vllm_version']}" if "identity" in side else f"NOT READ: {side['problem']}"
        lines.append(f"  {name} ({'+'.join(side['roles'])}, {side['vendor']}): {stack} via {' '.join(side['command'])}")
    for pair in found["pairs"]:
        lines.append(f"  {pair['prefill']} -> {pair['decode']}:")
        for f in pair["factors"]:
            values = f["prefill"] if f["prefill"] == f["decode"] else f"{f['prefill']} vs {f['decode']}"
            lines.append(f"    - {f['name']}: {values}: {'ok' if f['ok'] else 'REFUSED'}: {f['why']}")
    return lines


def as_status(found: dict) -> Stacks:
    """A record as ``status -o json`` shows it (:class:`xpdctl.status_model.Stacks`)."""
    hosts = []
    for name, side in found["hosts"].items():
        stack = side.get("identity") or {}
        nixl = [NixlModule(module=module, **(package or {})) for module, package in (stack.get("nixl") or {}).items()]
        hosts.append(HostStack(
            host=name, roles=side["roles"], vendor=side.get("vendor"), command=side["command"],
            declared_vllm=side.get("declared"), vllm_version=stack.get("vllm_version"), torch=stack.get("torch"),
            rocm=stack.get("rocm"), nixl=nixl, ucx_version=(stack.get("ucx") or {}).get("version"),
            problem=side.get("problem")))  # fmt: skip
    pairs = [StackPair(prefill=p["prefill"], decode=p["decode"], factors=[HandshakeFactor(**f) for f in p["factors"]])
             for p in found["pairs"]]  # fmt: skip
    read_at = datetime.fromtimestamp(found["read_at"], tz=timezone.utc).isoformat(timespec="seconds")
    return Stacks(read_at=read_at, hosts=hosts, pairs=pairs)


def against(plan: Plan, found: dict) -> list[str]:
    """What the inventory now asks of the stacks a record holds: hosts not read yet, hosts whose
    interpreter or image changes (read again by ``up``/``upgrade`` before a restart), and what the
    recorded stacks would fail with the inventory's declarations and attention backend."""
    lines, hosts = [], {}
    by_name = hosts_by_name(plan.inventory)
    for name, roles in engine_hosts(plan).items():
        entry = found["hosts"].get(name)
        command = prefix_of(plan, name)
        if entry is None or "identity" not in entry:
            lines.append(f"host {name}: stack not read yet; `up` reads it before provisioning")
        elif entry["command"] != command:
            lines.append(f"host {name}: engines move to {' '.join(command)} (read: {' '.join(entry['command'])}); "
                         "`up` or `upgrade` reads the new stack before restarting them")
        else:
            hosts[name] = {**entry, "roles": roles, "declared": vllm_version_of(plan.inventory, by_name[name])}
    _, problems = judge(hosts, plan.settings.forced_backend, holds_declared(plan))
    return lines + [f"refused as recorded: {p}" for p in problems]
