"""``xpdctl testhosts``: fleets of simulated GPU servers on this machine, reached over real SSH."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table

FLEET_OPTION = click.option(
    "--fleet", default="xpd", show_default=True, help="Fleet name (1-8 lowercase letters/digits); hosts are FLEET-1..N."
)


@click.group()
def command() -> None:
    """Test hosts: Debian hosts in network namespaces with simulated GPUs, NICs and vendor packages.

    Each host has its own network namespace on a bridge, an overlay root over one cached
    debootstrapped Debian that presents itself as Ubuntu 22.04, a PID namespace whose PID 1 is
    Debian's daemonless systemctl, and sshd. Its apt sources reach a local mirror of stand-in packages
    with the real names (nvidia-driver-570-server-open, amdgpu-dkms, rdma-core, ...) whose tools print
    output for the GPUs the host was given. Needs root; the first create builds the cache (minutes).

    \b
      xpdctl testhosts create -n 3 --gpus nvidia:2,amd:2 --no-declare-nics -o /tmp/th.yaml
      xpdctl testhosts ssh xpd-1 nvidia-smi
      xpdctl up -i /tmp/th.yaml
      xpdctl testhosts fault xpd-2 --fail-install amdgpu-dkms
      xpdctl testhosts destroy
    """


@command.command()
@FLEET_OPTION
@click.option("-n", "count", type=int, required=True, help="Number of hosts.")
@click.option(
    "--gpus",
    default="",
    help="GPUs per host in host order, VENDOR:COUNT[:MODEL] or none, e.g. nvidia:8,amd:8:MI300X,none. "
    "Hosts past the list have none (a router host).",
)
@click.option("--nics", type=int, default=1, show_default=True, help="RDMA NICs (mlx5_N) per GPU host.")
@click.option("--declare-nics/--no-declare-nics", default=True, show_default=True,
              help="List the simulated RDMA NICs under each host's nics in the inventory, for preflight and "
              "status checks. Engines then point UCX at them, and they carry no traffic: use --no-declare-nics "
              "to serve end to end (KV then moves over the virtual Ethernet).")  # fmt: skip
@click.option("--subnet", default="10.88.0.0/24", show_default=True, help="The bridge's network; .1 is this machine.")
@click.option("-o", "--inventory", "inventory_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write an xpdctl inventory for the hosts here.")  # fmt: skip
@click.option("--share", "shares", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder every host sees read-only at the same path (repeatable). Default: this Python "
              "environment and this xpdctl, so native units run the same interpreter.")  # fmt: skip
@click.option("--registry", "with_registry", is_flag=True,
              help="Also run a container registry for the fleet at registry.testhosts.invalid:5000 (HTTPS, "
              "trusted by the hosts; this machine pushes to <bridge IP>:5000), for `runtime: container`.")  # fmt: skip
def create(
    fleet: str,
    count: int,
    gpus: str,
    nics: int,
    declare_nics: bool,
    subnet: str,
    inventory_path: Path | None,
    shares: tuple[Path, ...],
    with_registry: bool,
) -> None:
    """Create N hosts (idempotent: running hosts are kept) and optionally write their inventory.

    \b
      xpdctl testhosts create -n 2 --gpus nvidia:8,amd:8
      xpdctl testhosts create --fleet lab -n 3 --gpus nvidia:2:H200-SXM,amd:2 --subnet 10.88.5.0/24 -o lab.yaml
      xpdctl testhosts create --fleet ctr -n 2 --gpus nvidia:1,amd:1 --registry --no-declare-nics -o ctr.yaml
    """
    from xpdctl.testhosts import fleet as fleets
    from xpdctl.testhosts.models import GpuDecl

    def progress(message: str) -> None:
        click.echo(f"==> {message}", err=True)

    record = fleets.create(
        fleet,
        count,
        GpuDecl.parse_list(gpus),
        nics=nics,
        subnet=subnet,
        inventory_path=inventory_path,
        shares=list(shares) or None,
        progress=progress,
        declare_nics=declare_nics,
        with_registry=with_registry,
    )
    key = fleets.fleet_dirs(fleet).key
    click.echo(f"fleet {fleet}: {len(record.hosts)} hosts on {record.bridge} ({record.subnet})")
    click.echo(f"ssh -i {key} root@{record.hosts[0].address}")
    if inventory_path:
        click.echo(f"inventory: {inventory_path}")


@command.command()
@FLEET_OPTION
def destroy(fleet: str) -> None:
    """Remove every host of the fleet: processes, mounts, namespaces, links, bridge and files.

    The cache (Debian root, package mirror) stays for the next create.

    \b
      xpdctl testhosts destroy --fleet xpd
    """
    from xpdctl.testhosts import fleet as fleets

    removed = fleets.destroy(fleet)
    click.echo(f"fleet {fleet}: removed {', '.join(removed) if removed else 'nothing (it did not exist)'}")


@command.command(name="list")
@output_option
def list_(output: str) -> None:
    """Every fleet's hosts with their address, GPUs and state (running, unreachable, stopped).

    \b
      xpdctl testhosts list
      xpdctl testhosts list -o json
    """
    from xpdctl.testhosts import fleet as fleets

    rows = [fleets.host_state(record, rec) for record in fleets.fleets() for rec in record.hosts]
    if output == "json":
        emit_json({"hosts": rows})
        return
    click.echo(
        table(
            ["fleet", "host", "address", "gpus", "present", "state", "faults"],
            [
                (r["fleet"], r["name"], r["address"], r["gpus"] or "-", r["gpus_present"], r["state"],
                 ",".join(r["faults"].get("fail_install", [])) or "-")  # fmt: skip
                for r in rows
            ],
        )
    )


@command.command(context_settings={"ignore_unknown_options": True})
@FLEET_OPTION
@click.argument("host")
@click.argument("remote_command", nargs=-1, type=click.UNPROCESSED)
def ssh(fleet: str, host: str, remote_command: tuple[str, ...]) -> None:
    """Open a shell on a host (or run a command) over SSH with the fleet's key and host keys.

    \b
      xpdctl testhosts ssh xpd-1
      xpdctl testhosts ssh xpd-1 nvidia-smi -L
    """
    import os

    from xpdctl.testhosts import fleet as fleets

    address = fleets.load(fleet).host(host).address
    argv = fleets.ssh_argv(fleet, address) + list(remote_command)
    os.execvp(argv[0], argv)


@command.command()
@FLEET_OPTION
@click.argument("host")
def reboot(fleet: str, host: str) -> None:
    """Reboot one host: its processes end, /run and /dev start empty, enabled units start again.

    Driver packages load the installed driver version at boot, so an upgraded driver takes effect
    only now, as on a real server.

    \b
      xpdctl testhosts reboot xpd-1
    """
    from xpdctl.testhosts import fleet as fleets

    fleets.reboot(fleet, host, progress=lambda message: click.echo(f"==> {message}", err=True))


@command.command()
@FLEET_OPTION
@click.argument("host")
@click.option("--fail-install", "fail_install", multiple=True, help="Package whose postinst fails (repeatable).")
@click.option("--gpus", "gpu_count", type=int, help="GPUs the host really has (differs from the inventory).")
@click.option("--unreachable/--reachable", default=None, help="Cut or restore the host's link to the bridge.")
@click.option("--nic-port", type=click.Choice(["ACTIVE", "DOWN"]), help="State of every RDMA port.")
@click.option("--nouveau/--no-nouveau", default=None,
              help="nouveau holds the NVIDIA GPUs from the next boot until one with it blacklisted (a fresh Ubuntu install).")
@click.option("--secure-boot", type=click.Choice(["on", "off"]),
              help="The firmware's Secure Boot state, as the SecureBoot EFI variable shows it (preflight reads it).")
@click.option("--clear", is_flag=True, help="Remove injected package failures.")
def fault(
    fleet: str,
    host: str,
    fail_install: tuple[str, ...],
    gpu_count: int | None,
    unreachable: bool | None,
    nic_port: str | None,
    nouveau: bool | None,
    secure_boot: str | None,
    clear: bool,
) -> None:
    """Inject a failure into a running host: a failing package install, missing GPUs, a cut link.

    \b
      xpdctl testhosts fault xpd-2 --fail-install amdgpu-dkms
      xpdctl testhosts fault xpd-1 --gpus 7          # preflight must notice 7 != 8
      xpdctl testhosts fault xpd-3 --unreachable     # SSH times out
      xpdctl testhosts fault xpd-3 --reachable --clear
      xpdctl testhosts fault xpd-1 --nouveau && xpdctl testhosts reboot xpd-1
      xpdctl testhosts fault xpd-1 --secure-boot on   # preflight fails a host that builds DKMS modules
    """
    from xpdctl.testhosts import fleet as fleets

    fleets.set_faults(
        fleet,
        host,
        fail_install=[] if clear else (list(fail_install) or None),
        gpu_count=gpu_count,
        reachable=None if unreachable is None else not unreachable,
        port_state=nic_port,
        nouveau=nouveau,
        secure_boot=None if secure_boot is None else secure_boot == "on",
    )
    click.echo(f"{host}: done")
