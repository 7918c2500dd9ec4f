"""A router restart by `xpdctl up` under streaming load through ``router.vip`` (the doors fleet of
tests/doors_fleet.py, after its firewall tests): a new admin token changes the routers' environment,
so each running router is restarted, handed off to a stand-in on its own host first
(xpdctl/deploy/handoff.py). No request fails, the address stays where it was, both routers run new
processes, and no stand-in is left behind. Simulator engines; GPUs simulated at the lowest layer.

The token stays changed for the fleet's later users (they read it from the fleet's environment).
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.doors_fleet import FLEET, ROUTER1, ROUTER2, VIP
from tests.upgrade.upgrade_helpers import Load

pytestmark = pytest.mark.testhosts

ROUTERS = (ROUTER1, ROUTER2)
UNIT = f"xpd-{FLEET}-router"


def _main_pid(doors_fleet, host: str) -> str:
    done = doors_fleet.ssh(host, f"systemctl show -p MainPID {UNIT}.service")  # one -p: the test hosts' systemctl
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().partition("=")[2]


def test_up_restarting_the_routers_hands_each_off_and_fails_nothing(doors_fleet):
    before = {h: _main_pid(doors_fleet, h) for h in ROUTERS}
    holder = [h for h in ROUTERS if doors_fleet.holds_vip(h)]
    old_token = doors_fleet.env["XPDCTL_ROUTER_ADMIN_TOKEN"]
    doors_fleet.env["XPDCTL_ROUTER_ADMIN_TOKEN"] = secrets.token_hex(16)

    with Load(f"http://{VIP}:8000", old_token, doors_fleet.data["model"]["name"], workers=4, max_seconds=300,
              client_key=doors_fleet.keys["tenant"]) as traffic:
        done = doors_fleet.xpdctl("up", "-i", doors_fleet.inventory, "--limit", ",".join(ROUTERS), "-o", "json",
                                  "--timeout", "300")
    print(f"\nrouters restarted by `up` behind {VIP} (test hosts, simulator engines, 4 streaming clients): "
          f"{traffic.ok} served, {len(traffic.failures)} failed")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert json.loads(done.stdout)["problems"] == []
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    after = {h: _main_pid(doors_fleet, h) for h in ROUTERS}
    assert all(after[h] not in (before[h], "0", "") for h in ROUTERS), (before, after)
    assert [h for h in ROUTERS if doors_fleet.holds_vip(h)] == holder
    for host in ROUTERS:
        left = doors_fleet.ssh(host, f"ls /etc/systemd/system /etc/xpdctl | grep -c -- -handoff || true")
        assert left.stdout.strip() == "0", (host, left.stdout)
