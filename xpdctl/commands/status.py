"""``xpdctl status``: what each service of a cluster is doing."""

from __future__ import annotations

import time
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@output_option
def command(inventory: Path, output: str) -> None:
    """Show every service of the cluster: process state, /health, restarts, last exit.

    \b
    JSON (-o json), stable keys:
      cluster, state_dir, healthy (every service running and answering /health)
      router:   {url, state, health}
      services: [{name, role, host, url, state, health, pid, restarts, started_at, last_exit, log}]
    state is running | starting | restarting | failed | stopped (router.state: not deployed before any up);
    health is healthy, why not (refused, timeout, HTTP 503), or - when the process is not running.

    \b
    Examples:
      xpdctl status -i inventory/local.yaml
      xpdctl status -i inventory/local.yaml -o json | jq -r .router.url
    """  # fmt: skip
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
