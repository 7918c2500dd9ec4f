"""``xpdctl provision``: run the playbooks against the inventory's hosts."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--limit", default=None, metavar="HOSTS",
              help="Only these hosts: names, groups (nvidia, amd, prefill, decode, router) or patterns, comma-separated.")
@click.option("--check", is_flag=True, help="Change nothing; report what would change.")
@click.option("--allow-reboot", is_flag=True,
              help="Reboot hosts whose driver, kernel command line or initramfs changed (otherwise reported only).")
@click.option("--render-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Install this render (from `xpdctl render`) instead of rendering the inventory now.")
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, metavar="KEY=VALUE|@FILE",
              help="Ansible variables for the roles (repeatable), e.g. -e nvidia_driver_version=570.172.08-0ubuntu0.22.04.1")
@click.option("--tags", default=None, metavar="ROLES",
              help="Only these roles, comma-separated (base_os, rdma, docker, nvidia_driver, amd_rocm, images, "
                   "model_weights, reboot, services); preflight always runs. See playbooks/README.md.")
@output_option
def command(inventory: Path, limit: str | None, check: bool, allow_reboot: bool, render_dir: Path | None,
            extra_vars: tuple[str, ...], tags: str | None, output: str) -> None:
    """Take fresh Ubuntu GPU hosts to serving: preflight, OS, drivers, runtimes, images, weights, services.

    \b
    Runs playbooks/site.yml through ansible-runner. Per host, in order:
      preflight     OS release, kernel headers, GPUs on the PCI bus vs the inventory, NICs, disk,
                    Secure Boot, free ports; a host that fails is left untouched
      base_os       security updates kept, kernel/driver packages excluded and held; running
                    kernel's headers (every DKMS build needs them)
      firewall      with firewall: in the inventory, nftables rules of xpdctl's own table (cluster
                    hosts and control reach everything, others only what is opened), nft -c checked
      rdma, docker  inbox rdma-core (DOCA-OFED with -e rdma_stack=doca), Docker from Docker's repo
      nvidia_driver / amd_rocm
                    driver, fabric manager at the driver's exact version, container toolkit /
                    amdgpu-dkms + amd-smi (ROCm too for native engines); every version pinned and held
      images        engine images pulled by digest, before anything is stopped
      model_weights the model into its path on the host
      then in batches of -e xpd_reboot_serial=N hosts (default 1), the router host last:
      reboot        only with --allow-reboot; otherwise the reason is reported
      nvidia_driver fabric manager and persistence daemon, once the new module is loaded
      services      rendered units and files installed, enabled, started in order
    One failing host does not stop the others; it is reported with the failing task and message.
    Every step probes before it changes, so re-running resumes where it stopped. --check reports
    what it cannot check without changing the host as "not checked", never as ok.

    \b
    Examples:
      xpdctl provision -i inventory/lab.yaml --check
      xpdctl provision -i inventory/lab.yaml --limit mi300x-01 --allow-reboot
      xpdctl provision -i inventory/lab.yaml --tags rdma -e rdma_stack=doca
      xpdctl provision -i inventory/lab.yaml -e 'preflight_os_allowed=[ubuntu 22.04, ubuntu 24.04]' -o json
    """  # fmt: skip
    from contextlib import nullcontext

    from xpdctl.audit import audited
    from xpdctl.errors import ExecutionError
    from xpdctl.inventory import load_inventory
    from xpdctl.provision import provision, render_now
    from xpdctl.provision.display import parse_extra_vars, print_progress, provision_table

    variables = parse_extra_vars(extra_vars)
    loaded = load_inventory(inventory)
    tree = render_dir or render_now(loaded, record=not check)
    # --check changes no host: only real runs go to the audit log.
    audit = nullcontext({}) if check else audited(
        loaded.inventory.cluster, "provision", limit=limit, allow_reboot=allow_reboot, extra_vars=sorted(variables),
        tags=tags)
    with audit as details:
        result = provision(loaded, tree, limit=limit, check=check, allow_reboot=allow_reboot,
                           extra_vars=variables, tags=tags, on_progress=print_progress)  # fmt: skip
        details["retry"] = result.retry
        if output == "json":
            emit_json(result.model_dump())
        else:
            click.echo(provision_table(result))
            click.echo(f"ansible output: {result.artifacts}/stdout")
        if not result.ok:
            raise ExecutionError(
                f"provisioning did not finish on {result.retry or 'some hosts'}; fix what the table says and re-run "
                f"only those: xpdctl provision -i {inventory} --limit {result.retry or 'HOSTS'}"
            )
