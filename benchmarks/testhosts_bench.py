#!/usr/bin/env python3
"""How long test hosts take: the one-off cache build, then create, driver install, reboot, destroy.

Prints one table. The cache rows report what the cache recorded when it was built (debootstrap from
Debian's mirror, then preparing the shared root); the other rows are measured now on a fleet of
--hosts hosts (fleet "thbn", 10.88.22.0/24), half NVIDIA and half AMD, removed at the end. Root only.

    .venv/bin/python benchmarks/testhosts_bench.py --hosts 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

from xpdctl.output import table
from xpdctl.testhosts import fleet
from xpdctl.testhosts.layout import cache_root, fleet_dirs
from xpdctl.testhosts.models import GpuDecl
import children  # noqa: E402 - benchmarks/children.py, next to this script

FLEET, SUBNET = "thbn", "10.88.22.0/24"
NVIDIA = "nvidia-driver-570-server-open nvidia-utils-570-server nvidia-fabricmanager-570"


def _recorded(pattern: str) -> str:
    found = sorted(cache_root().glob(pattern), key=lambda p: p.stat().st_mtime)
    for folder in reversed(found):
        record = folder / ".xpd-complete"
        if record.exists() and record.read_text().strip():
            return f"{json.loads(record.read_text())['seconds']:.1f}"
    return "not recorded"


def _ssh(record, address: str, command: str) -> None:
    dirs = fleet_dirs(record.name)
    subprocess.run(
        ["ssh", "-i", str(dirs.key), "-o", f"UserKnownHostsFile={dirs.known_hosts}", "-o", "BatchMode=yes",
         f"root@{address}", command],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def main() -> None:
    children.install()  # SIGTERM/SIGHUP still run the finally that destroys the hosts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    gpus = [GpuDecl(vendor="nvidia" if i % 2 == 0 else "amd", count=8) for i in range(args.hosts)]
    rows = [
        ("debootstrap bookworm minbase (once per cache)", _recorded("debootstrap-*"), "recorded"),
        ("prepare shared root (once per stand-in change)", _recorded("rootfs-*"), "recorded"),
    ]
    fleet.destroy(FLEET)
    try:
        started = time.monotonic()
        record = fleet.create(FLEET, args.hosts, gpus, subnet=SUBNET)
        created = time.monotonic() - started
        rows.append((f"create {args.hosts} hosts, all answering SSH", f"{created:.1f}", "measured"))
        rows.append(("  per host", f"{created / args.hosts:.1f}", "measured"))
        first = record.hosts[0]
        started = time.monotonic()
        _ssh(record, first.address, f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {NVIDIA}")
        rows.append(("apt-get update + NVIDIA driver, utils, fabric manager", f"{time.monotonic() - started:.1f}", "measured"))
        started = time.monotonic()
        fleet.reboot(FLEET, first.name)
        rows.append(("reboot one host until SSH answers", f"{time.monotonic() - started:.1f}", "measured"))
    finally:
        started = time.monotonic()
        fleet.destroy(FLEET)
        rows.append(("destroy the fleet", f"{time.monotonic() - started:.1f}", "measured"))
    print(table(["step", "seconds", "source"], rows))


if __name__ == "__main__":
    main()
