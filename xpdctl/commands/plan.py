"""``xpdctl plan``: what would change compared with an earlier render."""

from __future__ import annotations

import os
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--against", "against", type=click.Path(path_type=Path, file_okay=False, exists=True),
              required=True, help="Directory of an earlier `xpdctl render`.")
@output_option
@click.pass_context
def command(ctx: click.Context, inventory: Path, against: Path, output: str) -> None:
    """Show, as a unified diff, what rendering INVENTORY now would change in AGAINST.

    Exit status like diff(1): 0 when nothing would change, 1 when something would, 2 when the
    inventory is invalid. Secret values show as a short digest, never in clear.

    \b
    Examples:
      xpdctl render -i inventory/lab.yaml -o out/
      $EDITOR inventory/lab.yaml
      xpdctl plan -i inventory/lab.yaml --against out/          # review, then render again
      xpdctl plan -i inventory/lab.yaml --against out/ -o json  # {"changed": ..., "files": [...]}
    """  # fmt: skip
    from xpdctl.diff import diff_trees
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan, secret_names
    from xpdctl.render import read_tree, render_files

    loaded = load_inventory(inventory)
    new = render_files(build_plan(loaded, os.environ))
    changes = diff_trees(read_tree(against), new, secret_names(loaded.inventory))
    if output == "json":
        emit_json({
            "changed": bool(changes),
            "files": [{"path": c.path, "status": c.status, "diff": c.diff} for c in changes],
        })  # fmt: skip
    else:
        for change in changes:
            click.echo(change.diff, nl=False)
        if not changes:
            click.echo(f"no changes: {against}/ matches {inventory}", err=True)
    ctx.exit(1 if changes else 0)
