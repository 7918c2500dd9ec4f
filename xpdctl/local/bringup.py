"""``up``, ``status`` and ``down`` for a cluster whose every host is this machine (``runtime: native``).

The steps take an :class:`~xpdctl.local.executor.Executor`, so a multi-host form (provision, then a
remote executor per host) can reuse them; :func:`executor_for` is where it plugs in.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import subprocess
from pathlib import Path

from pydantic import BaseModel

from xpdctl.errors import ExecutionError, InputError
from xpdctl.local.executor import Change, Executor, LocalExecutor
from xpdctl.local.health import Progress, Target, probe, wait_healthy
from xpdctl.local.kvpath import PairReport, wait_kv_paths
from xpdctl.local.rendered import RenderedService, rendered_services
from xpdctl.local.smoke import SmokeResult, curl_line, smoke_request
from xpdctl.paths import cluster_state_dir

ENGINE_ROLES = ("prefill", "decode")
# Started only once the engines answer and the KV path is verified, so the first request a client
# sends through the router can succeed.
LATE_ROLES = ("router",)
KV_AGENT_ROLES = ("kv-agent",)
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


def _is_this_machine(address: str) -> bool:
    try:
        if ipaddress.ip_address(address).is_loopback:
            return True
    except ValueError:
        pass
    return address in {"localhost", socket.gethostname(), socket.getfqdn()}


def executor_for(plan, state_dir: Path) -> Executor:
    """The executor that runs this plan's services. Only clusters on this machine have one yet."""
    from xpdctl.inventory.topology import runtime_of

    inv = plan.inventory
    remote = [h.name for h in inv.hosts if not _is_this_machine(h.address)]
    containers = [h.name for h in inv.hosts if runtime_of(inv, h) != "native"]
    if remote or containers:
        raise InputError(
            f"up, status and down run here only for clusters whose hosts are all this machine with "
            f"runtime: native; {', '.join(sorted(set(remote + containers)))} are not. For real hosts, render the "
            "cluster (`xpdctl render`) and provision it; try `xpdctl up -i inventory/local.yaml` here"
        )
    return LocalExecutor(state_dir)


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


def _router_url(plan) -> str:
    inv = plan.inventory
    host = next(h for h in inv.hosts if h.name == inv.router.host)
    listen = inv.router.listen
    address = host.address if listen in ("0.0.0.0", "::") else listen
    return f"http://{address}:{inv.router.port}"


def bring_up(inventory: Path, *, timeout_s: float, progress: Progress) -> UpResult:
    from xpdctl.inventory import load_inventory
    from xpdctl.models import ensure_model
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files, write_tree

    plan = build_plan(load_inventory(inventory), os.environ)
    state_dir = cluster_state_dir(plan.cluster)
    executor = executor_for(plan, state_dir)
    _preflight(plan)
    model = plan.inventory.model
    built = False
    if model.builder:
        if not Path(model.weights_path).exists():
            progress.show(f"model: building {model.builder} into {model.weights_path}")
        built = ensure_model(model.builder, Path(model.weights_path))
        progress.done(f"model: {'built' if built else 'found'} {model.weights_path}")

    tree = state_dir / "rendered"
    write_tree(render_files(plan), tree)
    services = rendered_services(tree)

    current = {u.name: u for u in executor.services()}

    def keeps_running(s: RenderedService) -> bool:
        now = current.get(s.desired.unit.name)
        return now is not None and now.content_hash == s.desired.unit.content_hash and now.state == "running"

    _check_ports_free([s for s in services if current.get(s.desired.unit.name) is None
                       or current[s.desired.unit.name].state in ("failed", "stopped")])
    early = [s.desired for s in services if s.desired.role not in LATE_ROLES or keeps_running(s)]
    changes = executor.apply(early)

    def states() -> dict:
        return {u.name: u for u in executor.services()}

    wait_healthy(_targets(services, ENGINE_ROLES), timeout_s=timeout_s, what="engines", unit_states=states,
                 progress=progress)
    agents = [s.url for s in services if s.desired.role in KV_AGENT_ROLES and s.url]
    kv_pairs = wait_kv_paths(agents, timeout_s=timeout_s, progress=progress)

    for name, change in executor.apply([s.desired for s in services]).items():
        if changes.get(name) == "stopped" and change == "started":
            changes[name] = "restarted"  # a changed router was held back until the engines were ready
        elif change != "unchanged" or name not in changes:
            changes[name] = change
    others = {s.desired.role for s in services} - set(ENGINE_ROLES)
    wait_healthy(_targets(services, others), timeout_s=timeout_s, what="services", unit_states=states,
                 progress=progress)
    router_url = _router_url(plan)
    progress.show(f"smoke request through {router_url}")
    smoke = smoke_request(router_url, model.name, timeout_s=timeout_s)
    progress.done(f"smoke request: {smoke.completion_tokens} tokens in {smoke.seconds:.1f} s")
    return UpResult(
        cluster=plan.cluster, router_url=router_url, model=model.name, model_path=model.weights_path,
        model_built=built, changes=changes, kv_pairs=kv_pairs, smoke=smoke,
        curl=curl_line(router_url, model.name), state_dir=str(state_dir),
    )


class ServiceStatus(BaseModel):
    name: str
    role: str
    host: str
    url: str | None
    state: str  # running | starting | restarting | failed | stopped
    health: str  # healthy | refused | HTTP 503 | ... | - (not probed: not running)
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    last_exit: str | None = None
    log: str | None = None


class RouterStatus(BaseModel):
    url: str
    state: str
    health: str


class ClusterStatus(BaseModel):
    cluster: str
    state_dir: str
    healthy: bool
    router: RouterStatus
    services: list[ServiceStatus]


def cluster_status(inventory: Path) -> ClusterStatus:
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    plan = build_plan(load_inventory(inventory), os.environ)
    state_dir = cluster_state_dir(plan.cluster)
    executor = executor_for(plan, state_dir)
    running = {u.name: u for u in executor.services()}
    tree = state_dir / "rendered"
    deployed = rendered_services(tree) if (tree / "manifest.json").exists() else []
    services = []
    for s in deployed:
        unit = running.get(s.desired.unit.name)
        state = unit.state if unit else "stopped"
        health = probe(s.url) if s.url and state == "running" else "-"
        services.append(ServiceStatus(
            name=s.desired.unit.name, role=s.desired.role, host=s.desired.host, url=s.url, state=state,
            health=health, pid=unit.pid if unit else None, restarts=unit.restarts if unit else 0,
            started_at=unit.started_at if unit else None, last_exit=unit.last_exit if unit else None,
            log=unit.log if unit else None,
        ))
    router_url = _router_url(plan)
    router = next((s for s in services if s.role in LATE_ROLES), None)
    return ClusterStatus(
        cluster=plan.cluster,
        state_dir=str(state_dir),
        healthy=bool(services) and all(s.state == "running" and s.health == "healthy" for s in services),
        router=RouterStatus(url=router_url, state=router.state if router else "not deployed",
                            health=router.health if router else "-"),
        services=services,
    )


def bring_down(inventory: Path) -> list[str]:
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    plan = build_plan(load_inventory(inventory), os.environ)
    executor = executor_for(plan, cluster_state_dir(plan.cluster))
    stopped = executor.down()
    left = executor.leftover_processes() if isinstance(executor, LocalExecutor) else []
    if left:
        raise ExecutionError(f"processes {left} of cluster {plan.cluster} survived `down`; kill them and report a bug")
    return stopped
