"""``xpdctl upgrade``: roll a pool to the inventory's new release without failing a request."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML), already edited to the new release.")
@click.option("--pool", type=click.Choice(["prefill", "decode"]), required=True, help="The pool to upgrade.")
@click.option("--image", default=None, metavar="REF",
              help="New engine image (REPO:TAG@sha256:DIGEST) for the pool's vendors; container hosts only.")
@click.option("--max-unavailable", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances of the pool out of service at once; the rest (at least one) always serve.")
@click.option("--blue-green", is_flag=True,
              help="Bring the new generation up beside the old one and move traffic to it (needed when the "
                   "new release changes a KV-compatibility factor).")
@click.option("--restart", is_flag=True, help="Roll every instance, also those whose files did not change.")
@click.option("--dry-run", is_flag=True, help="Show the verdict and the phases; change nothing.")
@click.option("--resume", is_flag=True,
              help="Continue a failed or interrupted rollout where it stopped, with the inventory (and --image, "
                   "else the one it started with) as they are now for instances not upgraded yet.")
@click.option("--drain-timeout", "drain_timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds a drained instance's requests may take to finish before the step fails.")
@click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
              help="Seconds to wait for an engine to become healthy (and for the capacity floor).")
@click.option("--alt-port-offset", type=int, default=1000, show_default=True,
              help="Surge and blue-green instances listen on the inventory's ports plus this.")
@output_option
def command(inventory: Path, pool: str, image: str | None, max_unavailable: int, blue_green: bool, restart: bool,
            dry_run: bool, resume: bool, drain_timeout_s: float, timeout_s: float, alt_port_offset: int,
            output: str) -> None:
    """Upgrade one pool to what the inventory says now, one instance (or batch) at a time, under load.

    \b
    Per batch of --max-unavailable instances, each step recorded in <state dir>/upgrade/rollout.json
    before it runs:
      check-floor  the router sees enough other instances serving (pool size - max-unavailable, >= 1)
      pull         the new image / interpreter is on the host (before it is drained: pulls take minutes)
      drain        the router sends it no new requests; wait-idle: its in-flight requests finish
      stop, install, start, health
      warm-up      one request through a prefill->decode pair of its generation (the NIXL handshake)
      pairs-ok     the KV agents report its pairs ok and the router has read that
      undrain      the router sends it requests again (done when its health checks find it serving)
    A pool of one instance first gets a surge instance (other name and ports) that serves meanwhile.
    A failed step puts the instance back on the old version, stops, and records `failed`;
    fix the cause and run the same command with --resume. A fix in the inventory or --image (a new
    release) reaches the instances not upgraded yet; one that changes an upgraded instance is refused.

    \b
    When the new release changes a KV-compatibility factor (vLLM version, attention backend, KV dtype,
    model, ...), its instances cannot pair with the other pool: the in-place upgrade is refused with
    the factors that change, and --blue-green brings a whole new generation (both pools) up on other
    ports, moves traffic to its pairs, retires the old one, then moves back to the inventory's ports.
    The router never pairs across generations. Every run appends a line to <state dir>/audit.jsonl.

    \b
    Examples:
      xpdctl upgrade -i inventory/lab.yaml --pool decode --image rocm/vllm:v0.32.1@sha256:... --dry-run
      xpdctl upgrade -i inventory/local.yaml --pool decode --restart
      xpdctl upgrade -i inventory/lab.yaml --pool decode --max-unavailable 2 -o json
      xpdctl upgrade -i inventory/lab.yaml --pool decode --resume --dry-run   # what the fix changes
      xpdctl upgrade -i inventory/lab.yaml --pool decode --resume
      xpdctl upgrade -i inventory/lab.yaml --pool prefill --blue-green
    """  # fmt: skip
    from xpdctl.audit import audited, cluster_of
    from xpdctl.verify.health import Progress
    from xpdctl.upgrade import Request, upgrade
    from xpdctl.upgrade.steps import Options

    req = Request(inventory=inventory, pool=pool, image=image, max_unavailable=max_unavailable,
                  blue_green=blue_green, restart=restart, resume=resume, dry_run=dry_run,
                  alt_port_offset=alt_port_offset)
    options = Options(drain_timeout_s=drain_timeout_s, health_timeout_s=timeout_s)
    if dry_run:
        result = upgrade(req, options=options, progress=Progress())
    else:
        args = req.model_dump(mode="json", exclude={"inventory"}, exclude_defaults=True)
        with audited(cluster_of(inventory), "upgrade", **args) as details:
            result = upgrade(req, options=options, progress=Progress())
            details.update(status=result.status, mode=result.mode,
                           instances=[i.name for i in result.instances if i.kind == "instance"],
                           retargeted=result.retargeted,
                           generation=result.verdict.new_generation if result.verdict else None)
    if output == "json":
        emit_json(result.model_dump())
        return
    if result.verdict is not None:
        click.echo(result.verdict.reason())
    if result.status == "unchanged":
        click.echo(f"the {pool} pool already runs what the inventory says; nothing to do (--restart rolls it anyway)")
        return
    if result.retargeted:
        click.echo(f"the target changed since the rollout started: {', '.join(result.retargeted)} get the "
                   "inventory's files as they are now")
    click.echo(f"{result.mode} upgrade of the {pool} pool ({result.pool_size} instances, at least {result.floor} "
               f"serving): {result.status}")
    click.echo(table(["phase", "instances", "steps", "seconds"],
                     [[p.name, ", ".join(p.instances) or "-", " ".join(p.steps),
                       f"{sum(p.seconds.values()):.1f}" if p.seconds else "-"] for p in result.phases]))
    click.echo(f"state: {result.state_file}")
