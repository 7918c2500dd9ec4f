"""The steps of a rollout, each applied to the instances of one phase. Every step is idempotent:
a resumed rollout runs the step it was in again.

The deployed render (``<state dir>/rendered``) always lists exactly what should run: ``stop`` takes a
service out of it, ``install`` puts the new files in, ``start`` applies it through the executor.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docker.errors import DockerException, ImageNotFound

from xpdctl.errors import ExecutionError
from xpdctl.provision.hosts import container_image
from xpdctl.provision.pullfailures import pull_failure_line
from xpdctl.render import read_tree
from xpdctl.router.config import load_router_config
from xpdctl.ssh.dockerd import DockerdUnreachable, docker_client
from xpdctl.ssh.hostrun import HostShell
from xpdctl.units.rendered import rendered_services
from xpdctl.units.state import Executor
from xpdctl.upgrade.routeradmin import BackendView, RouterAdmins
from xpdctl.upgrade.state import Instance, Layout, Rollout
from xpdctl.units.tree import copy_service, manifest_of, without_service, write_deployed
from xpdctl.upgrade.warmup import warm_pair
from xpdctl.verify.health import Progress, Target, wait_healthy
from xpdctl.verify.kvpath import agent_pairs


@dataclass
class Options:
    drain_timeout_s: float = 300.0  # in-flight requests of a drained instance must finish by then
    health_timeout_s: float = 900.0  # an engine start, a floor wait
    # After a prefill's last request left, decodes may still be pulling its KV (a lease until vLLM's
    # VLLM_NIXL_ABORT_REQUEST_TIMEOUT; docs/router.md); stopping it that soon would fail their requests.
    kv_grace_s: float = 5.0
    poll_s: float = 0.5


@dataclass
class Context:
    rollout: Rollout
    layout: Layout
    deployed: Path  # the cluster's deployed render
    executor: Executor
    admin: RouterAdmins
    model: str
    options: Options
    progress: Progress
    shell: HostShell  # runs step_pull's check on an instance's host
    engine_key: str | None = None  # the engines' internal API key (inventory engine.api_key_env), for the warm-up

    def source(self, instance: Instance) -> Path:
        return self.layout.target if instance.source == "target" else self.layout.alt


Step = Callable[[Context, list[Instance]], None]


def apply_deployed(ctx: Context) -> None:
    """Run exactly what the deployed render lists."""
    # `up` checked local clusters; a unit name recurs on several hosts (the KV agent).
    ctx.executor.apply([s.desired for s in rendered_services(ctx.deployed, unique_names=False)])


def _wait(what: str, done: Callable[[], bool], timeout_s: float, ctx: Context, failure: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise ExecutionError(failure())
        ctx.progress.show(f"{what} ({timeout_s - (deadline - time.monotonic()):.0f} s)")
        time.sleep(ctx.options.poll_s)


def _pool_serving(ctx: Context, exclude: set[str]) -> list[BackendView]:
    return [b for b in ctx.admin.backends() if b.pool == ctx.rollout.pool and b.serving and b.url not in exclude]


def step_check_floor(ctx: Context, instances: list[Instance]) -> None:
    """Wait until taking these instances out still leaves the floor serving."""
    batch = {i.url for i in instances}
    floor = ctx.rollout.floor
    _wait(f"waiting for {floor} other {ctx.rollout.pool} instances to serve",
          lambda: len(_pool_serving(ctx, batch)) >= floor, ctx.options.health_timeout_s, ctx,
          lambda: f"only {len(_pool_serving(ctx, batch))} other {ctx.rollout.pool} instances serve; taking "
                  f"{', '.join(i.name for i in instances)} out would leave fewer than {floor}. "
                  "Check `xpdctl status`, then run the upgrade again with --resume")


def _check_interpreter(argv: list[str]) -> str:
    """Native runtime: the new interpreter runs on the host and has the engine's module."""
    module = argv[argv.index("-m") + 1].split(".")[0] if "-m" in argv else None
    if module is None:
        return shlex.join([argv[0], "--version"])
    return shlex.join([argv[0], "-c", f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"])


def _native_ready(ctx: Context, i: Instance, argv: list[str]) -> None:
    command = _check_interpreter(argv)
    run = ctx.shell.run(i.host, command + " 2>&1", ctx.options.health_timeout_s)
    problem = run.problem(ctx.options.health_timeout_s)
    if problem:
        raise ExecutionError(f"{i.name}: getting the new program ready failed: {problem}")
    if run.result.rc != 0:
        said = run.result.stdout.strip()[-300:] or f"exit status {run.result.rc}"
        raise ExecutionError(f"{i.name}: `{command}` failed on {i.host} ({said}); install the new release there, "
                             "or point the inventory (or --image) at one that is, then run the upgrade again with "
                             "--resume: instances not upgraded yet get what the inventory says then")


def _image_pulled(ctx: Context, i: Instance, image: str) -> None:
    """The image, pinned by digest, on the host's dockerd (pulled through the Docker SDK when missing)."""
    try:
        with docker_client(ctx.shell.transport, ctx.shell.targets[i.host], ctx.options.health_timeout_s) as client:
            try:
                client.images.get(image)
            except ImageNotFound:
                client.images.pull(image)
        return
    except DockerdUnreachable as exc:
        said = exc.why
    except DockerException as exc:
        said = str(getattr(exc, "explanation", None) or exc)
    raise ExecutionError(f"{i.name}: {pull_failure_line(i.host, image, said)} (the instance was not stopped; run the "
                         "upgrade again with --resume, with --image if it named the wrong one)")


def step_pull(ctx: Context, instances: list[Instance]) -> None:
    """Have the new program on the instance's host before anything stops (an image pull takes minutes)."""
    services = {(s.desired.host, s.desired.unit.name): s for tree in {ctx.source(i) for i in instances}
                for s in rendered_services(tree, unique_names=False)}
    for i in instances:
        argv = services[i.host, i.name].desired.unit.exec_start.argv
        ctx.progress.show(f"{i.name}: getting the new program ready on {i.host}")
        image = container_image(argv)
        if image:
            _image_pulled(ctx, i, image)
        else:
            _native_ready(ctx, i, argv)

def step_drain(ctx: Context, instances: list[Instance]) -> None:
    for i in instances:
        if ctx.admin.backend(i.url) is not None:
            ctx.admin.drain(i.url)


def step_undrain(ctx: Context, instances: list[Instance]) -> None:
    """Undrain, then wait until the router serves them: a restarted instance the router's health checks
    saw down stays out of rotation until it passes them again, and the next step may take another out."""
    for i in instances:
        ctx.admin.undrain(i.url)
    _wait("waiting for the router to serve " + ", ".join(i.name for i in instances),
          lambda: all((b := ctx.admin.backend(i.url)) is not None and b.serving for i in instances),
          ctx.options.health_timeout_s, ctx,
          lambda: f"the router does not find {', '.join(i.name for i in instances)} healthy again; see its log")


def step_wait_idle(ctx: Context, instances: list[Instance]) -> None:
    urls = {i.url for i in instances}

    def busy() -> dict[str, int]:
        return {b.name or b.url: b.in_flight for b in ctx.admin.backends() if b.url in urls and b.in_flight}

    _wait(f"waiting for in-flight requests on {', '.join(i.name for i in instances)} to finish",
          lambda: not busy(), ctx.options.drain_timeout_s, ctx,
          lambda: f"requests still in flight after {ctx.options.drain_timeout_s:.0f} s ({busy()}); stopping now would "
                  "fail them. Run the upgrade again with --resume and a larger --drain-timeout")
    if any(i.role == "prefill" for i in instances):
        time.sleep(ctx.options.kv_grace_s)


def step_stop(ctx: Context, instances: list[Instance]) -> None:
    files = read_tree(ctx.deployed)
    for i in instances:
        files = without_service(files, i.name)
    write_deployed(files, ctx.deployed)
    apply_deployed(ctx)


def step_install(ctx: Context, instances: list[Instance]) -> None:
    files = read_tree(ctx.deployed)
    for i in instances:
        files = copy_service(files, read_tree(ctx.source(i)), i.name)
    write_deployed(files, ctx.deployed)


def step_start(ctx: Context, instances: list[Instance]) -> None:
    apply_deployed(ctx)


def step_health(ctx: Context, instances: list[Instance]) -> None:
    wait_healthy([Target(name=i.name, url=i.url) for i in instances], timeout_s=ctx.options.health_timeout_s,
                 what="health", unit_states=lambda: {u.name: u for u in ctx.executor.services()},
                 progress=ctx.progress)


def _partner(ctx: Context, instance: Instance, phase: list[Instance]) -> str:
    other = "decode" if instance.role == "prefill" else "prefill"
    for i in phase:
        if i.role == other and i.generation == instance.generation:
            return i.url
    for b in ctx.admin.backends():
        if b.pool == other and b.generation == instance.generation and b.serving:
            return b.url
    raise ExecutionError(
        f"no {other} instance of generation {instance.generation} serves, so {instance.name} cannot be warmed up "
        "through a compatible pair; check `xpdctl status`"
    )


def step_warm_up(ctx: Context, instances: list[Instance]) -> None:
    for i in instances:
        partner = _partner(ctx, i, instances)
        prefill, decode = (i.url, partner) if i.role == "prefill" else (partner, i.url)
        seconds = warm_pair(prefill, decode, ctx.model, timeout_s=ctx.options.health_timeout_s, api_key=ctx.engine_key)
        ctx.progress.done(f"warm-up {prefill} -> {decode}: {seconds:.1f} s")


def step_pairs_ok(ctx: Context, instances: list[Instance]) -> None:
    """Wait until the KV agents report every pair of these instances ok, and the router has read that.

    While an instance was stopped its pairs were reported broken, and the router skips broken pairs
    until its next poll of the agents: counting it as serving before then would be counting wrong.
    """
    manifest = manifest_of(read_tree(ctx.deployed))
    services = [s for e in manifest["hosts"].values() for s in e["services"]]
    agents = [s["url"] for s in services if s["role"] == "kv-agent"]
    names = {i.name for i in instances}

    def not_ok() -> list[str]:
        bad = []
        for agent in agents:
            pairs = agent_pairs(agent)
            if isinstance(pairs, str):
                bad.append(pairs)
                continue
            bad += [f"{p.prefill} -> {p.decode}: {p.reason}" for p in pairs
                    if {p.prefill, p.decode} & names and not p.ok]
        return bad

    _wait("waiting for the KV agents to find the pairs of " + ", ".join(sorted(names)) + " ok",
          lambda: not not_ok(), ctx.options.health_timeout_s, ctx,
          lambda: "KV agents report pairs not ok: " + "; ".join(not_ok()))
    router = next(s for s in services if s["role"] == "router")
    time.sleep(load_router_config(ctx.deployed / router["config"]).kv_agent_poll_interval_s + ctx.options.poll_s)


def step_add(ctx: Context, instances: list[Instance]) -> None:
    for i in instances:
        ctx.admin.add(i.url, i.role, i.generation, i.name)
    # The router admits a backend after its own health check; wait for it to serve.
    _wait("waiting for the router to admit " + ", ".join(i.name for i in instances),
          lambda: all((b := ctx.admin.backend(i.url)) is not None and b.health == "healthy" for i in instances),
          ctx.options.health_timeout_s, ctx,
          lambda: f"the router did not find {', '.join(i.name for i in instances)} healthy; see the router's log")


def step_remove(ctx: Context, instances: list[Instance]) -> None:
    for i in instances:
        ctx.admin.remove(i.url)


def step_record(ctx: Context, instances: list[Instance]) -> None:
    """Blue-green: the routers' backends now are the target's; their configs on disk say so too.

    The running routers already have them (through their admin APIs); their units reload the new config
    (ExecReload=) rather than restarting, so nothing in flight is dropped and a virtual address stays put.
    """
    target = read_tree(ctx.layout.target)
    files = read_tree(ctx.deployed)
    manifest = manifest_of(files)
    for router in manifest["router"]["hosts"]:
        service = next(s for s in manifest["hosts"][router]["services"] if s["role"] == "router")
        files[service["config"]] = target[service["config"]]
    write_deployed(files, ctx.deployed)
    apply_deployed(ctx)


STEPS: dict[str, Step] = {
    "check-floor": step_check_floor,
    "pull": step_pull,
    "drain": step_drain,
    "wait-idle": step_wait_idle,
    "stop": step_stop,
    "install": step_install,
    "start": step_start,
    "health": step_health,
    "warm-up": step_warm_up,
    "pairs-ok": step_pairs_ok,
    "undrain": step_undrain,
    "add": step_add,
    "remove": step_remove,
    "record": step_record,
}
