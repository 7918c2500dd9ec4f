"""``xpdctl preflight``: read-only checks of every host against the inventory."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--limit", default=None, metavar="HOSTS", help="Only these hosts (names, groups or patterns).")
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, metavar="KEY=VALUE|@FILE",
              help="Ansible variables for the checks, e.g. -e 'preflight_os_allowed=[ubuntu 24.04]'.")
@output_option
def command(inventory: Path, limit: str | None, extra_vars: tuple[str, ...], output: str) -> None:
    """Check every host before provisioning it; changes nothing.

    \b
    Per host: OS release; headers for the running kernel (installed or installable, else DKMS fails);
    GPUs found on the PCI bus by vendor ID and device ID against the inventory's model and count
    (MI300X is class 0x1200, not a VGA/3D controller); NIC presence and port state; free disk for
    images and weights; Secure Boot (blocks unsigned DKMS modules); the ports the plan needs are free
    or held by this cluster's own services. Exit status 1 when any host fails a check.

    \b
    Examples:
      xpdctl preflight -i inventory/lab.yaml
      xpdctl preflight -i inventory/lab.yaml --limit amd -o json | jq '.hosts[] | select(.ok | not)'
    """  # fmt: skip
    from xpdctl.errors import ExecutionError
    from xpdctl.inventory import load_inventory
    from xpdctl.provision import preflight, render_now
    from xpdctl.provision.display import parse_extra_vars, preflight_table, print_progress

    variables = parse_extra_vars(extra_vars)
    loaded = load_inventory(inventory)
    result = preflight(loaded, render_now(loaded, record=False), limit=limit, extra_vars=variables,
                       on_progress=print_progress)  # fmt: skip
    if output == "json":
        emit_json(result.model_dump())
    else:
        click.echo(preflight_table(result))
    failed = [host.host for host in result.hosts if not host.ok]
    if failed:
        raise ExecutionError(f"preflight failed on {', '.join(failed)}; fix what the table says, then re-run")
