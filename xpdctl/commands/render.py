"""``xpdctl render``: write every file each host needs, plus manifest.json."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory to render into (created if missing).")
def command(inventory: Path, out: Path) -> None:
    """Render systemd units, env files, router and KV-agent config for every host into OUT.

    OUT/hosts/<host>/ mirrors each host's filesystem (etc/systemd/system/xpd-*.service,
    etc/xpdctl/*.env, etc/xpdctl/router.yaml, etc/xpdctl/kv-agent.yaml); OUT/manifest.json lists
    every service with its unit, port, command, vLLM arguments and environment; OUT/observability/
    holds a Prometheus config (file_sd targets, alert rules) and a Grafana dashboard for the cluster
    (docs/observability.md). Secrets named in
    engine.secret_env (default HF_TOKEN) are read from your environment now and written only to the
    mode-0600 env files. Rendering again gives byte-identical files; files of an earlier render that
    are no longer wanted are removed.

    \b
    Examples:
      xpdctl render -i inventory/lab.yaml -o out/
      HF_TOKEN=hf_... xpdctl render -i inventory/lab.yaml -o out/
      xpdctl plan -i inventory/lab.yaml --against out/    # what changed since
    """  # fmt: skip
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files, write_tree

    plan = build_plan(load_inventory(inventory), os.environ)
    files = render_files(plan)
    removed = write_tree(files, out)
    services = len(plan.services())
    click.echo(f"rendered {len(files)} files for {services} services on {len(plan.hosts)} hosts into {out}/")
    for rel in removed:
        click.echo(f"  removed {rel} (no longer in the inventory)")
