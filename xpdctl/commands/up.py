"""``xpdctl up``: bring a cluster up and prove it answers."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
              help="Seconds to wait at each stage (engines healthy, KV path verified, smoke request).")
@output_option
def command(inventory: Path, timeout_s: float, output: str) -> None:
    """Build the model if needed, render, start engines, verify KV, start the router, send one request.

    \b
    Steps, each shown as it runs:
      1. check that the engine interpreter has vLLM and NIXL (install nothing: ./install.sh does that)
      2. build the model the inventory names with model.builder, if it is not on disk yet
      3. render into the cluster's state directory (XPDCTL_STATE_DIR, default ~/.local/state/xpdctl/<cluster>)
      4. start the engines and the KV agent, wait for /health (about a minute per engine on 2 cores)
      5. wait for the KV agent to verify every prefill->decode KV path (side channel, NIXL transfer)
      6. start the router and send one completion through it
    Running `up` again restarts only services whose rendered unit or environment changed, and starts
    again any that gave up. Services keep running after `up` exits; `xpdctl down` stops them.

    \b
    Examples:
      xpdctl up -i inventory/local.yaml
      xpdctl up -i inventory/local.yaml -o json | jq -r .router_url
      XPDCTL_STATE_DIR=/tmp/xpd xpdctl up -i inventory/local.yaml --timeout 1800
    """  # fmt: skip
    from xpdctl.local.bringup import bring_up
    from xpdctl.local.health import Progress

    from xpdctl.audit import audited, cluster_of

    with audited(cluster_of(inventory), "up", timeout_s=timeout_s) as details:
        result = bring_up(inventory, timeout_s=timeout_s, progress=Progress())
        details["changes"] = {k: v for k, v in result.changes.items() if v != "unchanged"}
    if output == "json":
        emit_json(result.model_dump())
        return
    changed = {k: v for k, v in result.changes.items() if v != "unchanged"}
    click.echo(f"cluster {result.cluster} is up ({len(changed)} service(s) changed"
               + (": " + ", ".join(f"{k} {v}" for k, v in sorted(changed.items())) if changed else "") + ")")
    click.echo(f"  endpoint: {result.router_url}  (model {result.model})")
    click.echo(f"  smoke:    {result.smoke.text!r}")
    click.echo(f"  state:    {result.state_dir}")
    click.echo("try it:")
    click.echo(f"  {result.curl}")
    click.echo(f"status: xpdctl status -i {inventory}    stop: xpdctl down -i {inventory}")
