"""``up`` and ``down`` of a cluster: preflight, model, render, engines, KV path, router, smoke request.

The steps run services through the cluster's :class:`~xpdctl.local.executor.Executor` (see
:mod:`xpdctl.local.cluster`), so a multi-host form can reuse them with remote executors.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel

from xpdctl.errors import InputError
from xpdctl.identity.record import reads_stacks
from xpdctl.identity.record import record as record_identity
from xpdctl.local.cluster import KV_AGENT_ROLES, LATE_ROLES, open_cluster, router_url
from xpdctl.plan import ENGINE_ROLES
from xpdctl.units.changes import change_for
from xpdctl.units.rendered import RenderedService, rendered_services
from xpdctl.units.state import Change
from xpdctl.verify.health import Progress, Target, wait_healthy
from xpdctl.verify.kvpath import PairReport, wait_kv_paths
from xpdctl.verify.smoke import SmokeResult, curl_line, smoke_request

# Python modules an engine interpreter must have, per engine server; `./install.sh` installs them.
ENGINE_MODULES = {"vllm": ("vllm", "nixl"), "sim": ("xpdctl",)}


class UpResult(BaseModel):
    cluster: str
    router_url: str
    model: str
    model_path: str
    model_built: bool
    changes: dict[str, Change]
    kv_pairs: list[PairReport]
    smoke: SmokeResult
    curl: str
    state_dir: str
    # Seconds each stage took: engines healthy, KV paths verified, other services healthy, smoke request.
    timings_s: dict[str, float]


def _preflight(plan) -> None:
    """Refuse, with the install command, when what engines need is missing: `up` installs nothing."""
    inv = plan.inventory
    python = inv.engine.python
    if python is None:
        raise InputError("engine.python is not set; runtime: native needs the interpreter that has vLLM")
    if not os.access(python, os.X_OK):
        raise InputError(f"engine.python {python} does not exist; run ./install.sh first, which creates it")
    modules = ENGINE_MODULES[inv.engine.server]
    probe_code = (
        "import importlib.util, sys; "
        f"sys.exit(0 if all(importlib.util.find_spec(m) for m in {modules!r}) else 1)"
    )
    if subprocess.run([python, "-c", probe_code], capture_output=True).returncode != 0:
        raise InputError(
            f"{python} lacks {', '.join(modules)}; run ./install.sh, which installs them (`up` never installs)"
        )
    for module in ("tokenizers", "transformers", "torch") if inv.model.builder else ():
        if importlib.util.find_spec(module) is None:
            raise InputError(f"building the model needs {module} in this Python; run ./install.sh first")


def _check_ports_free(services: list[RenderedService]) -> None:
    """Services about to start need their ports; another program holding one would only show up as a
    crash a minute into the engine's start."""
    taken = []
    for s in services:
        if not s.port:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((s.address, s.port))
            except OSError:
                taken.append(f"{s.address}:{s.port} ({s.desired.unit.name})")
    if taken:
        raise InputError(
            f"port(s) {', '.join(taken)} already in use by another program; stop it, or give the service "
            "another port in the inventory (pools.<pool>.port, router.port, kv.agent_port)"
        )


def _targets(services: list[RenderedService], roles) -> list[Target]:
    return [Target(name=s.desired.unit.name, url=s.url) for s in services if s.desired.role in roles and s.url]


def bring_up(inventory: Path, *, timeout_s: float, progress: Progress) -> UpResult:
    from xpdctl.models import ensure_model
    from xpdctl.render import render_files, write_tree

    cluster = open_cluster(inventory)
    plan, state_dir, executor = cluster.plan, cluster.state_dir, cluster.executor
    _preflight(plan)
    if reads_stacks(plan):
        progress.show("engine stacks: reading vLLM, NIXL, UCX and torch from the engines' interpreter")
        factors = record_identity(plan, state_dir)
        progress.done("engine stacks: " + "; ".join(f.line() for f in factors[:2]))
    model = plan.inventory.model
    built = False
    if model.builder:
        if not Path(model.weights_path).exists():
            progress.show(f"model: building {model.builder} into {model.weights_path}")
        built = ensure_model(model.builder, Path(model.weights_path))
        progress.done(f"model: {'built' if built else 'found'} {model.weights_path}")

    write_tree(render_files(plan), cluster.rendered)
    services = rendered_services(cluster.rendered)

    current = {u.name: u for u in executor.services()}

    def keeps_running(s: RenderedService) -> bool:
        """Running, and either unchanged or changed only in what it reloads without a restart."""
        now = current.get(s.desired.unit.name)
        wanted = s.desired.unit.content_hash
        return (now is not None and now.state == "running"
                and change_for(now.state, now.content_hash, wanted) in ("unchanged", "reloaded"))

    _check_ports_free([s for s in services if current.get(s.desired.unit.name) is None
                       or current[s.desired.unit.name].state in ("failed", "stopped")])
    early = [s.desired for s in services if s.desired.role not in LATE_ROLES or keeps_running(s)]
    changes = executor.apply(early)

    def states() -> dict:
        return {u.name: u for u in executor.services()}

    timings = {"engines": wait_healthy(_targets(services, ENGINE_ROLES), timeout_s=timeout_s, what="engines",
                                       unit_states=states, progress=progress)}
    kv_started = time.monotonic()
    agents = [s.url for s in services if s.desired.role in KV_AGENT_ROLES and s.url]
    kv_pairs = wait_kv_paths(agents, timeout_s=timeout_s, progress=progress)
    timings["kv_paths"] = time.monotonic() - kv_started

    for name, change in executor.apply([s.desired for s in services]).items():
        if changes.get(name) == "stopped" and change == "started":
            changes[name] = "restarted"  # a changed router was held back until the engines were ready
        elif change != "unchanged" or name not in changes:
            changes[name] = change
    others = {s.desired.role for s in services} - set(ENGINE_ROLES)
    timings["services"] = wait_healthy(_targets(services, others), timeout_s=timeout_s, what="services",
                                       unit_states=states, progress=progress)
    url = router_url(plan)
    progress.show(f"smoke request through {url}")
    smoke = smoke_request(url, model.name, timeout_s=timeout_s, api_key=plan.router_client_key)
    timings["smoke"] = smoke.seconds
    progress.done(f"smoke request: {smoke.completion_tokens} tokens in {smoke.seconds:.1f} s")
    return UpResult(
        cluster=plan.cluster, router_url=url, model=model.name, model_path=model.weights_path,
        model_built=built, changes=changes, kv_pairs=kv_pairs, smoke=smoke,
        curl=curl_line(url, model.name, plan.router_client_key is not None), state_dir=str(state_dir),
        timings_s={k: round(v, 1) for k, v in timings.items()},
    )
