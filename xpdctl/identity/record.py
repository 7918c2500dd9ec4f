"""Read the engine stacks of a cluster at ``up`` time, keep them in its state, and refuse what cannot work.

Natively every engine of a host runs ``engine.python``; in containers, the vendor's image (the probe runs
there through ``docker run``). The record (``<state dir>/<cluster>/identity.json``) is what ``check`` and
``status`` compare later, without starting anything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from xpdctl.errors import InputError
from xpdctl.identity import EngineIdentity, Factor, compare_pools, read_identity
from xpdctl.inventory.topology import hosts_by_name, pool, runtime_of, vllm_version_of
from xpdctl.plan import Plan

RECORD = "identity.json"
DOCKER_PYTHON = ("docker", "run", "--rm", "-i", "--entrypoint=python3")


def prefix_of(plan: Plan, host_name: str) -> list[str]:
    """The command that starts the Python of ``host_name``'s engines (the probe's stdin is the script)."""
    inv = plan.inventory
    host = hosts_by_name(inv)[host_name]
    if runtime_of(inv, host) == "container":
        return [*DOCKER_PYTHON, inv.engine.images[host.vendor or ""]]
    return [inv.engine.python or ""]


def read_pools(plan: Plan, read=read_identity) -> dict[str, dict]:
    """{role: {"host", "vendor", "declared", "identity"}} for the first host of each pool (one probe per
    distinct stack)."""
    inv = plan.inventory
    hosts = hosts_by_name(inv)
    seen: dict[tuple[str, ...], EngineIdentity] = {}
    pools = {}
    for role in ("prefill", "decode"):
        name = pool(inv, role).hosts[0]
        prefix = tuple(prefix_of(plan, name))
        if prefix not in seen:
            seen[prefix] = read(list(prefix))
        pools[role] = {"host": name, "vendor": hosts[name].vendor, "declared": vllm_version_of(inv, hosts[name]),
                       "command": list(prefix), "identity": seen[prefix]}
    return pools


def judge(pools: dict[str, dict]) -> tuple[list[Factor], list[str]]:
    """Factor comparison of the two pools, and the problems that stop ``up``."""
    p, d = pools["prefill"], pools["decode"]
    factors = compare_pools(p["identity"], p["vendor"], d["identity"], d["vendor"])
    problems = [f"{f.name}: {f.line()}" for f in factors if not f.ok]
    for role, side in pools.items():
        found = side["identity"].vllm_version
        if found != side["declared"]:
            problems.append(
                f"{role} host {side['host']}: the inventory says vLLM {side['declared']} but "
                f"{' '.join(side['command'])} reports {found}; set hosts[].vllm_version or engine.vllm_version "
                "to what the stack reports, so check compares the real strings"
            )
    return factors, problems


def record(plan: Plan, state_dir: Path, read=read_identity) -> list[Factor]:
    """Read, keep and judge the cluster's engine stacks; InputError when they cannot serve PD together."""
    pools = read_pools(plan, read)
    factors, problems = judge(pools)
    data = {
        "read_at": time.time(),
        "pools": {role: {**{k: v for k, v in side.items() if k != "identity"},
                         "identity": side["identity"].model_dump()} for role, side in pools.items()},
        "factors": [f.__dict__ for f in factors],
    }
    # A real `up` records here, and the first one of a cluster runs before anything else made the dir.
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / RECORD).write_text(json.dumps(data, indent=2))
    if problems:
        raise InputError("the engine stacks cannot serve PD together: " + "; ".join(problems))
    return factors


def recorded(state_dir: Path) -> dict | None:
    path = state_dir / RECORD
    return json.loads(path.read_text()) if path.exists() else None
