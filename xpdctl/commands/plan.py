"""``xpdctl plan``: what would change, compared with the hosts or with an earlier render."""

from __future__ import annotations

import os
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--against", "against", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Directory of an earlier `xpdctl render`. Without it: the hosts themselves.")
@click.option("--timeout", "timeout_s", type=float, default=20.0, show_default=True,
              help="Seconds to wait for each host (live form).")
@output_option
@click.pass_context
def command(ctx: click.Context, inventory: Path, against: Path | None, timeout_s: float, output: str) -> None:
    """Show, as a unified diff, what rendering INVENTORY now would change.

    \b
    Two forms:
      --against DIR  compared with an earlier `xpdctl render -o DIR`
      (live)         compared with the files on the hosts, read over SSH, all hosts at once; a
                     cluster that runs on this machine (runtime native) is compared with the files
                     its last `xpdctl up` rendered into its state directory

    Exit status like diff(1): 0 when nothing would change, 1 when something would, 2 when the
    inventory is invalid, 3 when a host could not be read (its files are then left out of the diff,
    not shown as missing). Secret values show as a short digest, never in clear. When `up` recorded
    the engines' stacks (vLLM, NIXL, UCX, torch, read where they run), stderr also says what the
    inventory now asks of them: a host whose interpreter or image changes, or a declared vLLM the
    recorded stack does not have (`engine_stacks` in -o json).

    \b
    Examples:
      xpdctl render -i inventory/lab.yaml -o out/
      $EDITOR inventory/lab.yaml
      xpdctl plan -i inventory/lab.yaml --against out/          # review, then render again
      xpdctl plan -i inventory/lab.yaml                         # what `up` would change on the hosts
      xpdctl plan -i inventory/lab.yaml -o json  # {"changed", "files": [...], "unreachable": {...}}
    """  # fmt: skip
    from xpdctl.diff import diff_trees
    from xpdctl.errors import UnhealthyError
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan, secret_names
    from xpdctl.render import HOSTS, read_tree, render_files

    loaded = load_inventory(inventory)
    plan = build_plan(loaded, os.environ)
    new = render_files(plan)
    stacks = _stacks(plan)
    unreachable: dict[str, str] = {}
    if against is not None:
        old = read_tree(against)
    else:
        old, unreachable = _live(loaded, timeout_s)
        # Hosts hold only their hosts/<name>/ files (not the manifest, not the monitoring host's
        # observability/), and an unread host's files are unknown rather than missing.
        skipped = tuple(f"{HOSTS}/{name}/" for name in unreachable)
        new = {path: f for path, f in new.items() if path.startswith(f"{HOSTS}/") and not path.startswith(skipped)}
    changes = diff_trees(old, new, secret_names(loaded.inventory))
    if output == "json":
        emit_json({
            "changed": bool(changes),
            "files": [{"path": c.path, "status": c.status, "diff": c.diff} for c in changes],
            "unreachable": unreachable,
            "engine_stacks": stacks,
        })  # fmt: skip
    else:
        for line in stacks or []:
            click.echo(f"engine stacks: {line}", err=True)
        for change in changes:
            click.echo(change.diff, nl=False)
        if not changes and not unreachable:
            click.echo(f"no changes: {against or 'the hosts'} match {inventory}", err=True)
    if unreachable:
        raise UnhealthyError(
            "could not read "
            + "; ".join(f"{name}: {why}" for name, why in sorted(unreachable.items()))
            + " (their files are not in the diff; check SSH with `xpdctl status`)"
        )
    ctx.exit(1 if changes else 0)


def _stacks(plan) -> list[str] | None:
    """The recorded engine stacks against what the inventory asks now (None: nothing recorded)."""
    from xpdctl.identity.record import against, recorded
    from xpdctl.paths import cluster_state_path

    found = recorded(cluster_state_path(plan.cluster))
    return None if found is None else against(plan, found)


def _live(loaded, timeout_s: float):
    from xpdctl.deploy import runs_locally
    from xpdctl.render import read_tree

    if runs_locally(loaded.inventory):
        from xpdctl.local.cluster import rendered_dir
        from xpdctl.paths import cluster_state_path

        rendered = rendered_dir(cluster_state_path(loaded.inventory.cluster))
        if not rendered.is_dir():
            return {}, {}
        return {p: f for p, f in read_tree(rendered).items() if p.startswith("hosts/")}, {}
    from xpdctl.observe.livetree import live_tree

    tree = live_tree(loaded, timeout_s=timeout_s)
    return tree.files, tree.unreachable
