"""``xpdctl down``: stop every service of a cluster."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@output_option
def command(inventory: Path, output: str) -> None:
    """Stop every service of the cluster (router first, engines last).

    A cluster on this machine: its supervisor stops every process and `down` checks that none is left;
    logs and the rendered files stay in the state directory. A cluster on hosts: every unit of the
    cluster is stopped and disabled on every host over SSH, in parallel (listed as host:unit); unit
    files stay, so the hosts show what was deployed. `xpdctl up` starts the cluster again.

    \b
    Examples:
      xpdctl down -i inventory/local.yaml
      xpdctl down -i inventory/lab.yaml -o json
    """  # fmt: skip
    from xpdctl.audit import audited, cluster_of
    from xpdctl.deploy.where import open_cluster

    with audited(cluster_of(inventory), "down") as details:
        stopped = open_cluster(inventory).executor.down()
        details["stopped"] = stopped
    if output == "json":
        emit_json({"stopped": stopped})
    elif stopped:
        click.echo(f"stopped {len(stopped)} service(s): {', '.join(stopped)}")
    else:
        click.echo("nothing was running")
