"""One fleet of test hosts with every door of issue 17 shut, shared by the test modules that check
them (the fixture ``doors_fleet`` in tests/conftest.py; one `xpdctl up` for the session):

- tests/deploy/test_client_keys_testhosts.py: the router's front door (no key 401, over a limit 429);
- tests/deploy/test_firewall_testhosts.py: the engines' back doors (host firewall), rule changes;
- tests/deploy/test_router_handoff_testhosts.py: `up` restarting both routers under load (a new admin
  token: the fleet's environment keeps it), each handed off in place;
- tests/deploy/test_vip_testhosts.py: two routers behind one virtual address, failover under load;
- tests/upgrade/test_rollout_vip_testhosts.py: a decode upgrade behind that address (both routers drain).

The fleet: a prefill host (NVIDIA-like, 1 GPU), a decode host (AMD-like, 1 GPU), two router hosts
and an outsider: a fifth host on the same network that is not in the inventory, so it is neither a
cluster host nor in ``firewall.control`` (a stranger on the hosts' network). GPUs and vendor
packages are simulated at the lowest layer; nftables and keepalived are Debian's real packages from
the test hosts' strict mirror, run by each host's own network namespace; engines are the simulator,
with the internal API key (vLLM's --api-key check on /v1 only, as vLLM does it).

The inventory: ``router.hosts`` both router hosts behind ``router.vip``; ``router.auth.mode: keys``
with a 0600 client keys file (``xpdctl``, ``tenant`` and ``capped``, which may send
``CAPPED_PER_MINUTE`` requests a minute); ``firewall.control`` this machine's address on the
fleet's bridge.

The users run in that order (collection order) and each leaves what it changed as its docstring
says: the firewall module ends with ``firewall.clients`` narrowed to this machine; the VIP module
puts both routers back.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_helpers import ssh, xpdctl_runner
from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import FleetRecord, GpuDecl

FLEET = "door"
SUBNET = "10.88.63"
PREFILL, DECODE, ROUTER1, ROUTER2, OUTSIDER = (f"{FLEET}-{i}" for i in range(1, 6))
CONTROL = f"{SUBNET}.1"  # this machine, on the fleet's bridge
VIP = f"{SUBNET}.100"
ROUTER_UNIT = f"xpd-{FLEET}-router"
CAPPED_PER_MINUTE = 2
ADMIN_TOKEN = "doors-fleet-admin-token"  # the routers' admin API, which an upgrade drains engines through


class DoorsFleet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.inventory = tmp / "fleet.yaml"
        self.keys = {name: secrets.token_hex(24) for name in ("xpdctl", "tenant", "capped")}
        self.engine_key = secrets.token_hex(24)
        self.env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"), XPDCTL_ENGINE_API_KEY=self.engine_key,
                        XPDCTL_ROUTER_ADMIN_TOKEN=ADMIN_TOKEN)
        self.xpdctl = xpdctl_runner(self.env)
        self.record: FleetRecord | None = None
        self.data: dict = {}
        self.up: subprocess.CompletedProcess | None = None

    def create(self) -> None:
        fleet.destroy(FLEET)  # whatever an interrupted earlier run left
        gpus = [GpuDecl(vendor="nvidia", count=1), GpuDecl(vendor="amd", count=1), None, None, None]
        with pytest.MonkeyPatch.context() as patch:  # the hosts' keys go to the cluster's state dir
            patch.setenv("XPDCTL_STATE_DIR", self.env["XPDCTL_STATE_DIR"])
            self.record = fleet.create(FLEET, 5, gpus, subnet=f"{SUBNET}.0/24", inventory_path=self.inventory,
                                       declare_nics=False)  # fmt: skip
        keys_file = self.tmp / "client-keys.yaml"
        keys_file.write_text(yaml.safe_dump({"keys": [
            {"id": "xpdctl", "key": self.keys["xpdctl"]},
            {"id": "tenant", "key": self.keys["tenant"]},
            {"id": "capped", "key": self.keys["capped"], "requests_per_minute": CAPPED_PER_MINUTE},
        ]}, sort_keys=False))  # fmt: skip
        keys_file.chmod(0o600)
        data = yaml.safe_load(self.inventory.read_text())
        data["hosts"] = [h for h in data["hosts"] if h["name"] != OUTSIDER]
        data["router"] = {"hosts": [ROUTER1, ROUTER2], "auth": {"mode": "keys", "keys_file": keys_file.name},
                          "vip": {"address": VIP, "network": f"{SUBNET}.0/24", "interface": "eth0"}}  # fmt: skip
        data["firewall"] = {"control": [CONTROL]}
        self.write(data)
        self.up = self.xpdctl("up", "-i", self.inventory, "-o", "json", "--timeout", 600)

    def write(self, data: dict) -> None:
        self.data = data
        self.inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    def address(self, host: str) -> str:
        assert self.record is not None
        return self.record.host(host).address

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess:
        return ssh(FLEET, self.address(host), command)

    def ssh_argv(self, host: str) -> list[str]:
        argv = fleet.ssh_argv(FLEET, self.address(host))
        return [*argv[:-1], "-o", "BatchMode=yes", argv[-1]]

    def holds_vip(self, host: str) -> bool:
        done = self.ssh(host, f"ip -o addr show to {VIP}")
        assert done.returncode == 0, done.stderr
        return VIP in done.stdout

    def destroy(self) -> None:
        fleet.destroy(FLEET)
