"""Host facts: ``/etc/os-release``, ``uname -a``, ``/proc/driver/nvidia/version``."""

from __future__ import annotations

import re
import shlex

from xpdctl.probes.values import text
from xpdctl.status_model import OsInfo

# Machine names uname prints; used to find the machine field in `uname -a`, whose kernel version
# field has spaces and whose processor/platform fields are left out when unknown.
_ARCHES = ("x86_64", "aarch64", "arm64", "ppc64le", "s390x", "riscv64")

_NVRM = re.compile(r"NVRM version:.*?Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")


def parse_os_release(raw: str) -> dict[str, str]:
    """``/etc/os-release`` as a dict (shell-quoted values unquoted)."""
    values: dict[str, str] = {}
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return values


def parse_uname(raw: str) -> tuple[str | None, str | None]:
    """``uname -a`` -> (kernel release, machine)."""
    parts = raw.split()
    if len(parts) < 3:
        return None, None
    arch = next((part for part in reversed(parts) if part in _ARCHES), None)
    return parts[2], arch


def os_info(os_release: str, uname: str) -> OsInfo:
    release = parse_os_release(os_release)
    kernel, arch = parse_uname(uname)
    return OsInfo(
        pretty_name=text(release.get("PRETTY_NAME")),
        id=text(release.get("ID")),
        version_id=text(release.get("VERSION_ID")),
        kernel=kernel,
        arch=arch,
    )


def parse_nvidia_kernel_module(raw: str) -> str | None:
    """``/proc/driver/nvidia/version`` -> the loaded kernel module's version (e.g. "580.159.04").

    Compared with nvidia-smi's driver version it explains "Driver/library version mismatch".
    """
    match = _NVRM.search(raw)
    return match.group(1) if match else None
