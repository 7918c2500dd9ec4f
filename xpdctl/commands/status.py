"""``xpdctl status``: what each host and service of a cluster is doing."""

from __future__ import annotations

import time
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--watch", is_flag=True, help="Observe again every --interval seconds until Ctrl-C.")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.5), default=2.0, show_default=True,
              help="Seconds between observations with --watch.")
@output_option
def command(inventory: Path, watch: bool, interval_s: float, output: str) -> None:
    """Show what every host and service of the cluster is doing.

    \b
    Two forms, chosen by the inventory (as `xpdctl up` chooses):
      this machine  each service's process state, /health, restarts, last exit
      hosts         per host, all at once over SSH and HTTP: reachable, OS and kernel, driver and
                    ROCm versions, GPUs (memory, utilisation, ECC), RDMA ports, each unit's state,
                    engine health, vLLM version, model, requests running and waiting, KV cache use,
                    KV-agent pair health, router backends, which router host holds router.vip,
                    and drift (files on the host that differ from what `xpdctl render` produces
                    now); one screen, problems last, exit status 3 when any problem is an error

    \b
    JSON (-o json) on this machine, stable keys:
      cluster, state_dir, healthy (every service running and answering /health)
      router:   {url, state, health}
      services: [{name, role, host, url, state, health, pid, restarts, started_at, last_exit, log}]
    state is running | starting | restarting | failed | stopped (router.state: not deployed before any up);
    health is healthy, why not (refused, timeout, HTTP 503), or - when the process is not running.
    JSON for hosts: docs/status-schema.md (schema: docs/status-schema.json).

    \b
    Examples:
      xpdctl status -i inventory/local.yaml
      xpdctl status -i inventory/local.yaml -o json | jq -r .router.url
      xpdctl status -i inventory/lab.yaml --watch
      xpdctl status -i inventory/lab.yaml -o json | jq '.problems[] | select(.severity == "error")'
    """  # fmt: skip
    from xpdctl.deploy import runs_locally
    from xpdctl.inventory import load_inventory

    loaded = load_inventory(inventory)
    show = _show_local if runs_locally(loaded.inventory) else _show_hosts
    if not watch:
        show(inventory, loaded, output)
        return
    from xpdctl.errors import UnhealthyError

    try:
        while True:
            if output == "table":
                click.clear()
            try:
                show(inventory, loaded, output)
            except UnhealthyError as exc:
                click.echo(f"xpdctl: {exc.message}", err=True)
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return


def _show_hosts(inventory: Path, loaded, output: str) -> None:
    from xpdctl.errors import UnhealthyError
    from xpdctl.observe.cluster import observe_cluster
    from xpdctl.observe.summary import render_text

    status = observe_cluster(loaded)
    if output == "json":
        emit_json(status.model_dump(mode="json"))
    else:
        click.echo(render_text(status))
        _show_stacks(loaded.inventory.cluster)
    if not status.healthy:
        errors = [p for p in status.problems if p.severity == "error"]
        raise UnhealthyError(
            f"cluster {status.cluster} is not healthy: {len(errors)} error(s), first: {errors[0].host or '-'}: "
            f"{errors[0].what} ({errors[0].hint})"
        )


def _show_stacks(cluster: str) -> None:
    from xpdctl.identity.record import describe, recorded
    from xpdctl.paths import cluster_state_path

    found = recorded(cluster_state_path(cluster))
    if found:
        click.echo("\n" + "\n".join(describe(found, "engine stacks as `up` or `upgrade` read them")))


def _show_local(inventory: Path, loaded, output: str) -> None:
    from xpdctl.local.status import cluster_status

    status = cluster_status(inventory)
    if output == "json":
        emit_json(status.model_dump())
        return
    now = time.time()
    rows = [
        (s.name, s.role, s.state, s.health, s.pid, s.restarts,
         f"{now - s.started_at:.0f}s" if s.started_at and s.state == "running" else "", s.last_exit or "", s.url or "")
        for s in status.services
    ]
    click.echo(table(["service", "role", "state", "health", "pid", "restarts", "up", "last exit", "url"], rows))
    if not status.services:
        click.echo(f"cluster {status.cluster} is not deployed here; start it with `xpdctl up -i {inventory}`")
    else:
        click.echo(f"router {status.router.url}: {status.router.state}, {status.router.health}; "
                   f"cluster {'healthy' if status.healthy else 'NOT healthy'}")
        _show_stacks(status.cluster)
