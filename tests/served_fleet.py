"""One fleet of test hosts serving a cluster, shared by the test modules that need one (the fixture
``served_fleet`` in tests/conftest.py; one `xpdctl up` for the session instead of one per module).

The fleet: two NVIDIA-like hosts (2 x H100-SXM each, prefill), three AMD-like hosts (2 x MI300X each,
decode) and a router host without GPUs. GPUs and vendor packages are simulated at the lowest layer
(sysfs PCI entries, stand-in apt packages with the real names from the strict local mirror); engines
are simulators (runtime native, server sim) behind the real router and KV agents, with the router's
admin API on. The hosts' simulated RDMA NICs are left out of the inventory: they carry no traffic,
and KV crosses the hosts' virtual Ethernet instead.

It comes up the way tests/deploy/test_up_testhosts.py asserts a first `up` goes: on fresh hosts, while
NVIDIA2's driver package fails to install and AMD2 is unreachable (``first_up``), then a re-run with
both fixed (``resumed``). The users:

- tests/deploy/test_up_testhosts.py asserts on those two runs and on the serving cluster; it changes
  nothing it does not put back (``claim(changes=False)``).
- tests/upgrade/test_rollout_testhosts.py upgrades the decode pool, rolls back, goes blue-green and
  ends with `down` (``claim(changes=True)``), on its own copy of the inventory.

A user that changes the cluster says so; the next user's ``claim`` then puts it back with an `up` of
the original inventory. In the tier's own order (deploy, then upgrade) that never runs; in any other
order, or with one module alone, every user still finds the cluster as the first `up`s left it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.deploy_helpers import ssh, xpdctl_runner
from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import FleetRecord, GpuDecl

FLEET = "dpl"
SUBNET = "10.88.60.0/24"
NVIDIA, AMD, ROUTER, NVIDIA2, AMD2, AMD3 = (f"{FLEET}-{i}" for i in range(1, 7))
PREFILL_UNITS = {NVIDIA: f"xpd-{FLEET}-prefill-0", NVIDIA2: f"xpd-{FLEET}-prefill-1"}
DECODE_UNITS = {AMD: f"xpd-{FLEET}-decode-0", AMD2: f"xpd-{FLEET}-decode-1", AMD3: f"xpd-{FLEET}-decode-2"}
ROUTER_UNIT = f"xpd-{FLEET}-router"
ADMIN_TOKEN = "served-fleet-admin-token"


class ServedFleet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.inventory = tmp / "fleet.yaml"  # as fleet.create wrote it; users that edit one copy it
        self.env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"), XPDCTL_ROUTER_ADMIN_TOKEN=ADMIN_TOKEN)
        self.state_dir = tmp / "state" / FLEET
        self.record: FleetRecord | None = None
        self.first_up: subprocess.CompletedProcess | None = None
        self.resumed: subprocess.CompletedProcess | None = None
        self._changed_by: str | None = None
        # `python -m xpdctl ARGS` as a person runs it, with the fleet's state dir (never raises on its exit).
        self.xpdctl = xpdctl_runner(self.env)

    def up(self) -> subprocess.CompletedProcess:
        return self.xpdctl("up", "-i", self.inventory, "-o", "json", "--timeout", 600)

    def create(self) -> None:
        fleet.destroy(FLEET)  # whatever an interrupted earlier run left
        nvidia, amd = GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2)
        # fleet.create registers the hosts' keys in the cluster's state dir, where `up` and `status` look.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("XPDCTL_STATE_DIR", self.env["XPDCTL_STATE_DIR"])
            self.record = fleet.create(FLEET, 6, [nvidia, amd, None, nvidia, amd, amd], subnet=SUBNET,
                                       inventory_path=self.inventory, declare_nics=False)  # fmt: skip
        fleet.set_faults(FLEET, NVIDIA2, fail_install=["nvidia-driver-570-server-open"])
        fleet.set_faults(FLEET, AMD2, reachable=False)
        try:
            self.first_up = self.up()
        finally:
            fleet.set_faults(FLEET, NVIDIA2, fail_install=[])
            fleet.set_faults(FLEET, AMD2, reachable=True)
        self.resumed = self.up()

    def claim(self, user: str, changes: bool) -> None:
        """Called by a module before it uses the cluster: puts back what an earlier user changed, and
        records whether this one changes it (``changes``: the next user then puts it back)."""
        if self._changed_by is not None:
            done = self.up()
            if done.returncode != 0:
                raise RuntimeError(f"`up` putting back what {self._changed_by} changed exited {done.returncode}:\n"
                                   f"{done.stderr[-3000:]}")  # fmt: skip
        self._changed_by = user if changes else None

    def address(self, host: str) -> str:
        assert self.record is not None
        return self.record.host(host).address

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        """Run ``command`` on one of the fleet's hosts over real SSH."""
        return ssh(FLEET, self.address(host), command)

    def manifest(self) -> dict:
        return json.loads((self.state_dir / "rendered" / "manifest.json").read_text())

    def destroy(self) -> None:
        fleet.destroy(FLEET)
