"""`xpdctl upgrade` behind ``router.vip``: two router hosts, each with its own backend list, and clients
that reach whichever holds the address. The upgrade drains, adds and removes engines on every router
(xpdctl/upgrade/routeradmin.py, RouterAdmins); had it told one router only, the other would send
requests to the engine being restarted. On the doors fleet (tests/doors_fleet.py: one prefill, one
decode, two routers, client keys, firewall), after its VIP tests put both routers back; simulator
engines, GPUs simulated at the lowest layer (test hosts). The decode pool has one instance, so the
upgrade brings up a surge instance (other ports) that serves meanwhile, then removes it everywhere.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from upgrade_helpers import Load

from tests.doors_fleet import DECODE, FLEET, PREFILL, ROUTER1, ROUTER2, VIP

pytestmark = pytest.mark.testhosts

ROUTERS = (ROUTER1, ROUTER2)


def _pids(doors_fleet, host: str) -> dict[str, str]:
    """The cluster's units on the host -> their main process."""
    done = doors_fleet.ssh(host, f"for f in /etc/systemd/system/xpd-{FLEET}-*.service; do u=${{f##*/}}; "
                                 "echo \"$u $(systemctl show -p MainPID $u | cut -d= -f2)\"; done")
    assert done.returncode == 0, done.stderr
    return dict(line.split() for line in done.stdout.splitlines())


def _token(doors_fleet) -> str:
    """The routers' admin token as the fleet's last `up` rendered it (the router handoff test changes it)."""
    return doors_fleet.env["XPDCTL_ROUTER_ADMIN_TOKEN"]


def _backends(doors_fleet, host: str) -> list[tuple[str, bool]]:
    """(url, serving) of every backend on that router host's own admin API, in its order."""
    request = urllib.request.Request(f"http://{doors_fleet.address(host)}:8000/admin/backends",
                                     headers={"Authorization": f"Bearer {_token(doors_fleet)}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return [(b["url"], b["health"] == "healthy" and not b["draining"]) for b in json.loads(resp.read())["backends"]]


def test_a_decode_upgrade_behind_the_address_reaches_both_routers_and_fails_nothing(doors_fleet):
    before = {h: _backends(doors_fleet, h) for h in ROUTERS}
    assert before[ROUTER1] == before[ROUTER2] and all(serving for _, serving in before[ROUTER1])
    routers = {h: _pids(doors_fleet, h) for h in ROUTERS}
    prefill, decode = _pids(doors_fleet, PREFILL), _pids(doors_fleet, DECODE)
    holder = [h for h in ROUTERS if doors_fleet.holds_vip(h)]

    with Load(f"http://{VIP}:8000", _token(doors_fleet), doors_fleet.data["model"]["name"], workers=3,
              max_seconds=240, client_key=doors_fleet.keys["tenant"]) as traffic:
        done = doors_fleet.xpdctl("upgrade", "-i", doors_fleet.inventory, "--pool", "decode", "--restart",
                                  "--timeout", "120", "--drain-timeout", "120", "-o", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\ndecode upgrade behind {VIP} (test hosts, simulator engines, 3 streaming clients): "
          f"{traffic.ok} served, {len(traffic.failures)} failed")
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert json.loads(done.stdout)["status"] == "done"
    restarted = _pids(doors_fleet, DECODE)
    unit = f"xpd-{FLEET}-decode-0.service"
    assert restarted[unit] not in (decode[unit], "0")
    # Both routers list what they listed before, the surge instance gone from each, every one serving.
    assert {h: _backends(doors_fleet, h) for h in ROUTERS} == before
    # Nothing else restarted, and the address stayed where it was.
    assert {h: _pids(doors_fleet, h) for h in ROUTERS} == routers and _pids(doors_fleet, PREFILL) == prefill
    assert [h for h in ROUTERS if doors_fleet.holds_vip(h)] == holder
