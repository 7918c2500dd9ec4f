"""Boot, probe and stop one test host.

A supervisor (:mod:`.supervise`) runs ``nsenter --net`` (the host's namespace) + ``unshare --mount --uts
--ipc --pid --fork --kill-child`` with :data:`BOOT`, and boots the host again after a reboot. BOOT
mounts, all inside the host's own mount namespace (so nothing stays mounted on this machine when the
host dies): the overlay root; /proc, whose kernel settings are read-only but for the host's own copies
of a few; /sys, read-only, with the fake PCI devices, RDMA class and EFI variables; /dev; /run; the hardware folder;
the shared read-only folders. It then chroots into PID 1, Debian's daemonless ``systemctl`` run as
``/sbin/init init``, which starts the enabled units (sshd) and reaps orphans. Killing ``unshare`` kills
PID 1 and so every process of the host.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from xpdctl.errors import ExecutionError
from xpdctl.testhosts.layout import HostDirs
from xpdctl.testhosts.run import recorded_process, run

BOOT = r"""
set -eu
M=$XPD_MERGED
mount -t overlay overlay -o "lowerdir=$XPD_LOWER,upperdir=$XPD_UPPER,workdir=$XPD_WORK" "$M"
mount -t proc proc "$M/proc"
# /proc/sys outside net/ is this machine's kernel: read-only, except the keys playbooks set, which
# each host gets its own copy of (reset at every boot, as a reboot resets a real kernel).
mount --bind "$M/proc/sys" "$M/proc/sys"
mount -o remount,bind,ro "$M/proc/sys"
mount --bind "$M/proc/sys/net" "$M/proc/sys/net"
mount -o remount,bind,rw "$M/proc/sys/net"
# Each boot has its own boot_id (Ansible's reboot module compares it to see that a reboot happened).
mkdir -p "$XPD_SYSCTL_DIR/kernel/random"
cat /proc/sys/kernel/random/uuid > "$XPD_SYSCTL_DIR/kernel/random/boot_id"
mount --bind "$XPD_SYSCTL_DIR/kernel/random/boot_id" "$M/proc/sys/kernel/random/boot_id"
for key in $XPD_SYSCTLS; do
  [ -f "/proc/sys/$key" ] || continue
  mkdir -p "$(dirname "$XPD_SYSCTL_DIR/$key")"
  cat "/proc/sys/$key" > "$XPD_SYSCTL_DIR/$key"
  mount --bind "$XPD_SYSCTL_DIR/$key" "$M/proc/sys/$key"
done
# /proc/sysrq-trigger would act on this machine's kernel (reboot it, for one): read-only in a host.
if [ -e "$M/proc/sysrq-trigger" ]; then
  mount --bind -o ro "$M/proc/sysrq-trigger" "$M/proc/sysrq-trigger"
fi
# sysfs is this machine's too: read-only, as in a container.
mount -t sysfs -o ro sysfs "$M/sys"
mount --bind "$XPD_HW/sys/bus/pci/devices" "$M/sys/bus/pci/devices"
# The cgroup v1 hierarchies, as a real host's init mounts them at boot: dockerd and runc need them
# (without, dockerd fails with "Devices cgroup isn't mounted"). They are this machine's hierarchies.
mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$M/sys/fs/cgroup"
for hierarchy in $XPD_CGROUPS; do
  mkdir "$M/sys/fs/cgroup/$hierarchy"
  mount -t cgroup -o "$hierarchy" cgroup "$M/sys/fs/cgroup/$hierarchy"
done
mount -t overlay sysclass -o "lowerdir=$XPD_HW/sys/class:$M/sys/class" "$M/sys/class"
# The firmware's EFI variables (Secure Boot); hosts whose hardware folder predates them have none.
if [ -d "$XPD_HW/sys/firmware" ]; then
  mount -t overlay sysfirmware -o "lowerdir=$XPD_HW/sys/firmware:$M/sys/firmware" "$M/sys/firmware"
fi
mount -t tmpfs -o mode=755,nosuid dev "$M/dev"
mknod -m 666 "$M/dev/null" c 1 3
mknod -m 666 "$M/dev/zero" c 1 5
mknod -m 666 "$M/dev/full" c 1 7
mknod -m 666 "$M/dev/random" c 1 8
mknod -m 666 "$M/dev/urandom" c 1 9
mknod -m 666 "$M/dev/tty" c 5 0
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$M/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$M/dev/shm"
ln -s pts/ptmx "$M/dev/ptmx"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
mount -t tmpfs -o mode=755,nosuid,nodev run "$M/run"
# What systemd and tmpfiles.d make at boot: sshd's privilege-separation dir, and the marker that tells
# Ansible and invoke-rc.d that systemd (here: the daemonless systemctl) manages services.
mkdir -p "$M/run/sshd" "$M/run/systemd/system" "$M/run/lock"
mkdir -p "$M/etc/xpd-testhost"
# Docker's data root on a disk of its own, as servers have it: outside the overlay root, so dockerd can
# use overlay2 (an overlay upper dir cannot sit on overlayfs).
mkdir -p "$XPD_DOCKER_ROOT" "$M/var/lib/docker"
mount --bind "$XPD_DOCKER_ROOT" "$M/var/lib/docker"
mount --bind -o ro "$XPD_HW" "$M/etc/xpd-testhost"
for share in $XPD_SHARES; do
  mkdir -p "$M$share"
  mount --rbind -o ro "$share" "$M$share"
done
hostname "$XPD_HOSTNAME"
exec chroot "$M" /bin/sh -c 'run-parts /usr/lib/xpd-testhost/boot.d || true; exec /sbin/init init'
"""


CGROUP_HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")

# Global (not per-namespace) kernel settings the playbooks change, e.g. kernel.numa_balancing for MI300X.
SHADOWED_SYSCTLS = (
    "kernel/numa_balancing", "vm/max_map_count", "vm/swappiness", "vm/nr_hugepages", "fs/file-max",
    "fs/inotify/max_user_watches",
)  # fmt: skip


def prepare(dirs: HostDirs, hostname: str, etc_hosts: str, authorized_key: str) -> str:
    """Write the host's own files into its overlay upper dir; returns its SSH host public key."""
    for folder in (dirs.upper, dirs.work, dirs.merged):
        folder.mkdir(parents=True, exist_ok=True)
    etc = dirs.upper / "etc"
    (etc / "ssh").mkdir(parents=True, exist_ok=True)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(etc_hosts)
    (etc / "machine-id").write_text(secrets.token_hex(16) + "\n")
    key = etc / "ssh/ssh_host_ed25519_key"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{hostname}", "-f", str(key)])
    ssh_dir = dirs.upper / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").write_text(authorized_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    return key.with_suffix(".pub").read_text().strip()


def pid(dirs: HostDirs) -> int | None:
    """The running host's supervisor process (:mod:`.supervise`), or None."""
    # Hosts booted by xpdctl before supervisors existed have their unshare process recorded.
    return recorded_process(dirs.pid, b"xpdctl.testhosts.supervise", b"unshare")


def boot_argv(netns: str) -> list[str]:
    """The command that runs one boot of a host (its paths come in the environment, see :func:`boot`)."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--", "unshare", "--mount", "--uts", "--ipc", "--pid",
            "--fork", "--kill-child", "--propagation", "private", "--", "/bin/sh", "-c", BOOT]  # fmt: skip


def boot(dirs: HostDirs, netns: str, hostname: str, lower: Path, shares: list[Path]) -> int:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "XPD_MERGED": str(dirs.merged),
        "XPD_LOWER": str(lower),
        "XPD_UPPER": str(dirs.upper),
        "XPD_WORK": str(dirs.work),
        "XPD_HW": str(dirs.hardware),
        "XPD_SHARES": " ".join(str(s) for s in shares),
        "XPD_HOSTNAME": hostname,
        "XPD_SYSCTLS": " ".join(SHADOWED_SYSCTLS),
        "XPD_SYSCTL_DIR": str(dirs.sysctl),
        "XPD_CGROUPS": " ".join(CGROUP_HIERARCHIES),
        "XPD_DOCKER_ROOT": str(dirs.docker_data),
    }
    with open(dirs.log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "xpdctl.testhosts.supervise", netns, str(dirs.power_requests)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the host outlives the xpdctl command that booted it
        )
    dirs.pid.write_text(str(process.pid))
    return process.pid


def wait_for_ssh(address: str, port: int, deadline: float, dirs: HostDirs, booted: int) -> None:
    """Until sshd answers with its banner; raises with the host's boot log when it never does.

    ``booted`` is the PID :func:`boot` returned: watched directly, since right after the fork its
    command line is not yet the one :func:`pid` recognises.
    """
    while time.monotonic() < deadline:
        if not alive(booted):
            break
        try:
            with socket.create_connection((address, port), timeout=1) as conn:
                conn.settimeout(2)
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    log = dirs.log.read_text(errors="replace").strip().splitlines() if dirs.log.exists() else []
    raise ExecutionError(
        f"test host at {address} did not answer SSH; its boot log is {dirs.log}",
        details=log[-10:],
    )


def stop(dirs: HostDirs, netns_pids: list[int], timeout: float = 10) -> None:
    """Kill every process of the host (all live in its network namespace) and wait until they are gone."""
    for request in dirs.power_requests.glob("*-requested"):
        request.unlink(missing_ok=True)  # or the supervisor would boot it again
    outer = pid(dirs)
    kill_all(netns_pids + ([outer] if outer is not None else []), timeout)
    dirs.pid.unlink(missing_ok=True)


def remove_container_cgroups(dirs: HostDirs, timeout: float = 10) -> None:
    """Remove the cgroups dockerd made on this machine's hierarchies for the host's containers.

    Killing the host kills its containers, but their (now empty) cgroups stay in the hierarchies the
    host mounted; the container IDs are the folders of its data root. Call after :func:`stop`.
    """
    ids = {p.name for p in (dirs.docker_data / "containers").glob("*")}
    deadline = time.monotonic() + timeout
    for hierarchy in CGROUP_HIERARCHIES:
        for cid in ids:
            group = Path("/sys/fs/cgroup", hierarchy, "docker", cid)
            while group.exists() and time.monotonic() < deadline:
                try:
                    group.rmdir()
                except OSError:
                    time.sleep(0.05)  # its last processes are still exiting


def kill_all(pids: list[int], timeout: float = 10) -> None:
    """SIGKILL ``pids`` and wait (bounded) until they are gone."""
    targets = set(pids)
    for target in targets:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(t) for t in targets) and time.monotonic() < deadline:
        time.sleep(0.05)


def alive(target: int) -> bool:
    """Whether ``target`` still runs; a zombie counts as gone (and is reaped when it is our child)."""
    try:
        os.waitpid(target, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{target}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
