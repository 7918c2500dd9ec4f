"""``xpdctl upgrade``: decide what to roll out and how, then run the persisted phases.

A failed step in a phase marked ``rollback`` puts its instances back on the old version (or takes
surge/green instances away again), stops the rollout and records ``failed``; ``--resume`` runs that
phase again. A rollout interrupted anywhere else continues at the step it was in. ``--resume``
renders the inventory again: instances not upgraded yet take its files as they are then (``retarget``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from xpdctl.audit import who
from xpdctl.errors import ExecutionError, InputError, XpdError
from xpdctl.identity.record import keep
from xpdctl.inventory.routertls import client_context
from xpdctl.paths import cluster_state_path
from xpdctl.render import read_tree, render_files, write_tree
from xpdctl.upgrade import phases as ph
from xpdctl.upgrade.retarget import decide, differences
from xpdctl.upgrade.routeradmin import RouterAdmin, RouterAdmins, admin_token
from xpdctl.upgrade.state import Instance, Layout, Phase, Retarget, Rollout, exclusive, load_rollout, save_rollout
from xpdctl.upgrade.steps import STEPS, Context, Options, apply_deployed, step_health, step_pairs_ok, step_undrain
from xpdctl.upgrade.target import ALT_SUFFIX, Verdict, alt_plan, check_alt_ports, target_plan, verdict, with_image
from xpdctl.units.tree import copy_service, engines, find_service, manifest_of, without_service, write_deployed
from xpdctl.verify.health import Progress


class Request(BaseModel):
    inventory: Path
    pool: Literal["prefill", "decode"]
    image: str | None = None
    max_unavailable: int = 1
    blue_green: bool = False
    restart: bool = False  # roll instances whose files did not change too
    resume: bool = False
    dry_run: bool = False
    alt_port_offset: int = 1000


class UpgradeResult(BaseModel):
    cluster: str
    pool: str
    status: str  # done | unchanged | dry-run
    mode: str | None = None
    verdict: Verdict | None = None
    pool_size: int = 0
    floor: int = 0
    phases: list[Phase] = []
    instances: list[Instance] = []
    retargeted: list[str] = []  # --resume: instances that take the inventory's files as they are now
    state_file: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _instance(manifest: dict, name: str, kind: str = "instance", source: str = "target") -> Instance:
    host, entry = find_service(manifest, name)
    return Instance(name=name, host=host, role=entry["role"], url=entry["url"], kind=kind, source=source,
                    generation=entry["generation"])


def _new_rollout(req: Request, loaded, layout: Layout, deployed_dir: Path, environ: Mapping[str, str]):
    """(rollout or None when nothing changes, verdict); writes previous/target/alt trees unless dry-run."""
    deployed = read_tree(deployed_dir)
    manifest_d = manifest_of(deployed)
    target_files = render_files(target_plan(loaded, environ))
    manifest_t = manifest_of(target_files)
    verdict_ = verdict(manifest_d, manifest_t, req.pool)
    if not verdict_.compatible and not req.blue_green:
        raise InputError(verdict_.reason() + "; refused in place. Run it with --blue-green, which brings the new "
                         "generation up beside the old one on other ports and moves traffic to it pair by pair")
    names = {role: [s["name"] for _, s in engines(manifest_d, role)] for role in ("prefill", "decode")}
    for role, listed in names.items():
        if sorted(listed) != sorted(s["name"] for _, s in engines(manifest_t, role)):
            raise InputError(f"the inventory adds or removes {role} instances; an upgrade keeps the instances as "
                             "they are: change the pool's size with `xpdctl up` (or provision), then upgrade")
    pool_size = len(names[req.pool])
    if req.blue_green:
        wanted = set(names["prefill"] + names["decode"])
        mode = "blue-green"
        floor = pool_size
    else:
        rolling = [n for n in names[req.pool] if req.restart or differences(deployed, target_files, n)]
        if not rolling:
            return None, verdict_
        floor, batch, surge = ph.sizes(pool_size, req.max_unavailable)
        wanted = set(rolling[:surge])
        mode = "in-place"
    alt = alt_plan(loaded, environ, wanted, req.alt_port_offset)
    check_alt_ports(alt, manifest_d)
    alt_files = render_files(alt)
    manifest_a = manifest_of(alt_files)
    alts = [_instance(manifest_a, s.name, "green" if req.blue_green else "surge", "alt") for s in alt.engines]
    if req.blue_green:
        olds = [_instance(manifest_t, n) for n in names["prefill"] + names["decode"]]
        phases = ph.blue_green(olds, alts)
    else:
        olds = [_instance(manifest_t, n) for n in rolling]
        phases = ph.in_place(olds, alts, batch, stop_first=req.restart)
    rollout = Rollout(
        cluster=loaded.inventory.cluster, pool=req.pool, mode=mode, by=who(), started_at=_now(), phases=phases,
        instances={i.name: i for i in olds + alts}, pool_size=pool_size, floor=floor,
        old_generation=verdict_.old_generation, new_generation=verdict_.new_generation,
        image=req.image, alt_port_offset=req.alt_port_offset,
    )
    if not req.dry_run:
        write_tree(deployed, layout.previous)
        write_tree(target_files, layout.target)
        write_tree(alt_files, layout.alt)
    return rollout, verdict_


def _retarget(req: Request, loaded, layout: Layout, rollout: Rollout, image: str | None,
              environ: Mapping[str, str]) -> tuple[list[str], Verdict | None]:
    """--resume: render the inventory as it is now; instances not upgraded yet whose files changed take the
    new ones (recorded in the rollout and its target/alt trees unless dry-run). Refusals: ``retarget.decide``."""
    recorded = {"target": read_tree(layout.target), "alt": read_tree(layout.alt)}
    wanted = {i.name.removesuffix(ALT_SUFFIX) for i in rollout.instances.values() if i.source == "alt"}
    new = {"target": render_files(target_plan(loaded, environ)),
           "alt": render_files(alt_plan(loaded, environ, wanted, rollout.alt_port_offset))}
    changed = "the inventory" + (" and --image" if image != rollout.image else "")
    resume = f"xpdctl upgrade -i {req.inventory} --pool {rollout.pool} --resume"
    names, v = decide(rollout, read_tree(layout.previous), recorded, new, resume=resume, changed=changed)
    if not names:
        return [], None
    manifests = {source: manifest_of(files) for source, files in new.items()}
    for n in names:
        old = rollout.instances[n]
        fresh = _instance(manifests[old.source], n, old.kind, old.source)
        rollout.instances[n] = fresh.model_copy(update={"status": old.status, "error": old.error})
    rollout.image = image
    rollout.old_generation, rollout.new_generation = v.old_generation, v.new_generation
    rollout.retargets.append(Retarget(at=_now(), instances=names, image=image))
    if not req.dry_run:
        write_tree(new["target"], layout.target)
        write_tree(new["alt"], layout.alt)
        save_rollout(layout, rollout)
    return names, v


def _rollback(ctx: Context, phase: Phase, members: list[Instance], failed_step: str) -> None:
    previous = read_tree(ctx.layout.previous)
    files = read_tree(ctx.deployed)
    # The old instances' files left the deployed render at install (or at stop, in a rollout recorded
    # before batches lost that step): they come back from the previous render.
    stopped = bool({"stop", "install"} & set(phase.steps[:phase.steps.index(failed_step) + 1]))
    alts = [i for i in members if i.kind != "instance"]
    for i in alts:
        ctx.admin.remove(i.url)
        files = without_service(files, i.name)
    olds = [i for i in members if i.kind == "instance"]
    if stopped:
        for i in olds:
            files = copy_service(files, previous, i.name)
    write_deployed(files, ctx.deployed)
    if alts or stopped:
        apply_deployed(ctx)
    if stopped:
        step_health(ctx, olds)
        step_pairs_ok(ctx, olds)
    step_undrain(ctx, olds)


def _fail(ctx: Context, phase: Phase, members: list[Instance], step: str, exc: BaseException) -> None:
    r = ctx.rollout
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    r.status = "failed"
    r.error = f"{phase.name}: {step}: {message}"
    for i in members:
        i.status, i.error = "failed", message
    save_rollout(ctx.layout, r)
    if not phase.rollback or not isinstance(exc, XpdError):
        return  # Ctrl-C, or past the point where the old version can come back: resume where it stopped
    ctx.progress.done(f"{phase.name}: {step} failed; rolling {', '.join(i.name for i in members)} back")
    try:
        _rollback(ctx, phase, members, step)
    except XpdError as again:
        r.error += f"; rolling back failed too: {again.message}"
    else:
        r.error += "; rolled back to the old version, which serves"
        r.step = 0
    save_rollout(ctx.layout, r)


def run(ctx: Context) -> None:
    r = ctx.rollout
    r.status, r.error = "running", None
    save_rollout(ctx.layout, r)
    while r.phase < len(r.phases):
        phase = r.phases[r.phase]
        members = [r.instances[n] for n in phase.instances]
        while r.step < len(phase.steps):
            step = phase.steps[r.step]
            for i in members:
                i.status, i.error = step, None
            save_rollout(ctx.layout, r)  # recorded before it runs: a resumed rollout runs it again
            ctx.progress.show(f"{phase.name}: {step} {', '.join(phase.instances)}")
            start = time.monotonic()
            try:
                STEPS[step](ctx, members)
            except BaseException as exc:
                _fail(ctx, phase, members, step, exc)
                raise
            phase.seconds[step] = round(time.monotonic() - start, 3)
            r.step += 1
        for i in members:
            i.status = "done"
        ctx.progress.done(f"{phase.name}: done {', '.join(phase.instances)}")
        r.phase, r.step = r.phase + 1, 0
        save_rollout(ctx.layout, r)
    r.status, r.finished_at = "done", _now()
    save_rollout(ctx.layout, r)


def _runners(loaded, environ: Mapping[str, str], state_dir: Path):
    """(executor, host shell) of the cluster: this machine's for a local cluster, SSH for hosts."""
    from xpdctl.deploy.where import executor_for, host_shell_for
    from xpdctl.plan import build_plan

    plan = build_plan(loaded, environ)
    return executor_for(plan, state_dir), host_shell_for(plan)


def _check_stacks(req: Request, loaded, environ: Mapping[str, str], state_dir: Path, progress: Progress):
    """The pool's new engine stack read on its hosts before anything restarts; refused, with the
    factor, when it cannot shake hands with the other pool. Returns what to record once it is done."""
    from xpdctl.deploy.stacks import with_new_stacks
    from xpdctl.identity.record import reads_stacks

    plan = target_plan(loaded, environ)
    if not reads_stacks(plan):
        return None
    # Blue-green brings both pools up anew: both new stacks must shake hands with each other.
    roles = ("prefill", "decode") if req.blue_green else (req.pool,)
    progress.show(f"engine stacks: reading the new stack of {' and '.join(roles)} on their hosts")
    hosts, pairs, problems = with_new_stacks(plan, state_dir, roles)
    if problems:
        progress.done("engine stacks: refused")
        raise InputError(f"the {req.pool} pool's new engine stack cannot serve PD with the other pool; nothing was "
                         "restarted: " + "; ".join(problems))
    progress.done("engine stacks: " + "; ".join(f"{f['name']} ok" for f in pairs[0]["factors"]) if pairs
                  else "engine stacks: read")  # fmt: skip
    return hosts, pairs


def upgrade(req: Request, *, options: Options, progress: Progress, environ: Mapping[str, str] | None = None
            ) -> UpgradeResult:
    from xpdctl.inventory import load_inventory

    environ = dict(os.environ if environ is None else environ)
    inventory = load_inventory(req.inventory)
    loaded = with_image(inventory, req.pool, req.image)
    inv = loaded.inventory
    state_dir = cluster_state_path(inv.cluster)
    layout = Layout(state_dir)
    # Only a real `up` (or `provision`) renders here: --check, preflight and status use a scratch dir.
    deployed_dir = state_dir / "rendered"
    if not (deployed_dir / "manifest.json").exists():
        raise InputError(
            f"cluster {inv.cluster} is not deployed: no `xpdctl up` recorded it ({deployed_dir} does not exist); "
            f"run `xpdctl up -i {req.inventory}` first"
        )
    executor, shell = (None, None) if req.dry_run else _runners(loaded, environ, state_dir)

    def result(status: str, rollout: Rollout | None, v: Verdict | None, retargeted: list[str] | None = None
               ) -> UpgradeResult:
        return UpgradeResult(
            cluster=inv.cluster, pool=req.pool, status=status, verdict=v, state_file=str(layout.rollout),
            mode=rollout.mode if rollout else None, pool_size=rollout.pool_size if rollout else 0,
            floor=rollout.floor if rollout else 0, phases=rollout.phases if rollout else [],
            instances=list(rollout.instances.values()) if rollout else [], retargeted=retargeted or [],
        )

    with exclusive(layout):
        existing = load_rollout(layout)
        unfinished = existing is not None and existing.status != "done"
        if unfinished and not req.resume:
            at = existing.current()
            where = f" at {at[0].name}: {at[1]}" if at else ""
            raise ExecutionError(
                f"a rollout of the {existing.pool} pool is {existing.status}{where}"
                + (f" ({existing.error})" if existing.error else "")
                + f". Fix the cause, then run `xpdctl upgrade -i {req.inventory} --pool {existing.pool} --resume`"
            )
        if req.resume:
            if not unfinished:
                raise InputError("there is no failed or interrupted rollout to resume; run the upgrade without --resume")
            if existing.pool != req.pool:
                raise InputError(f"the unfinished rollout is of the {existing.pool} pool; resume it with --pool {existing.pool}")
            image = req.image if req.image is not None else existing.image
            rollout, stacks = existing, None  # its stacks were checked when it started
            retargeted, v = _retarget(req, with_image(inventory, req.pool, image), layout, rollout, image, environ)
            if retargeted and not req.dry_run:
                progress.done(f"the target changed since the rollout started: {', '.join(retargeted)} get the "
                              "inventory's files as they are now")
        else:
            retargeted = []
            stacks = _check_stacks(req, loaded, environ, state_dir, progress)
            rollout, v = _new_rollout(req, loaded, layout, deployed_dir, environ)
            if rollout is None:
                return result("unchanged", None, v)
        if req.dry_run:
            return result("dry-run", rollout, v, retargeted)
        manifest = manifest_of(read_tree(deployed_dir))
        routers = [next(s for s in manifest["hosts"][h]["services"] if s["role"] == "router")
                   for h in manifest["router"]["hosts"]]
        token = admin_token(inv.router.admin_token_env, environ, deployed_dir / routers[0]["env_file"])
        context = client_context(manifest["router"].get("ca_pem"))
        ctx = Context(
            rollout=rollout, layout=layout, deployed=deployed_dir, executor=executor, shell=shell,
            # Each router host's own address, not router.vip's: behind it every router keeps its own backends.
            admin=RouterAdmins([RouterAdmin(r["url"], token, context=context) for r in routers]),
            model=inv.model.name, options=options,
            progress=progress, engine_key=environ.get(inv.engine.api_key_env) or None,
        )
        run(ctx)
        if stacks is not None:
            keep(state_dir, *stacks)
        return result("done", rollout, v, retargeted)

