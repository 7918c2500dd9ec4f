"""The ``xpdctl`` command line.

Each module in :mod:`xpdctl.commands` defines one top-level command as ``command``; the group finds
them by module name, so adding a command never touches this file. Commands import their heavy
dependencies (aiohttp, ansible-runner, nixl) inside the command body to keep ``--help`` fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from xpdctl import __version__
from xpdctl.errors import XpdError


def _command_modules() -> dict[str, str]:
    from xpdctl import commands

    return {
        info.name.replace("_", "-"): f"xpdctl.commands.{info.name}"
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith("_")
    }


class _CommandGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_command_modules())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _command_modules().get(cmd_name)
        if module is None:
            return None
        return importlib.import_module(module).command


@click.group(cls=_CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xpdctl")
def cli() -> None:
    """Turn a rack of mixed-vendor GPU servers into one prefill/decode disaggregated LLM cluster.

    \b
    Typical day one:
      xpdctl check  -i inventory/lab.yaml          # validate, explain every KV pair
      xpdctl render -i inventory/lab.yaml -o out/  # see every file each host gets
      xpdctl up     -i inventory/lab.yaml          # provision, deploy, start, verify
      xpdctl status -i inventory/lab.yaml          # what the cluster is doing

    On a machine without GPUs, `xpdctl up -i inventory/local.yaml` runs a real local PD cluster.
    """


def main() -> None:
    try:
        status = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("xpdctl: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except XpdError as exc:
        click.echo(f"xpdctl: error: {exc.message}", err=True)
        for line in exc.details:
            click.echo(line, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("xpdctl: interrupted", err=True)
        sys.exit(130)
    # Without standalone mode, click returns the code of a command's ctx.exit(code) instead of exiting
    # (e.g. `plan` exits 1 when there is a diff).
    if isinstance(status, int) and status:
        sys.exit(status)
