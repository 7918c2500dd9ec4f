"""Two routers behind one address on test hosts: `up` with router.vip, keepalived (Debian's real
package, from the test hosts' strict mirror) on both router hosts, VRRP over the fleet's bridge.

Under a bounded request loop to the virtual address, the active router host's router is stopped:
its requests fail until keepalived's health check moves the address, then the other router serves.
The numbers (failover seconds, requests failed, requests served) are printed; engines are the simulator.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml
from deploy_helpers import ssh, state_env, xpdctl_runner

from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import GpuDecl

# Not yet run: the heavy lock stayed busy until the deadline of the session that wrote it. Soak (out of
# CI) until a run on test hosts passes, then the testhosts tier (DEVELOPERS.md, Tests).
pytestmark = [pytest.mark.testhosts, pytest.mark.soak]

FLEET = "vipf"
SUBNET = "10.88.64"
VIP = f"{SUBNET}.100"
ROUTER1, ROUTER2 = f"{FLEET}-3", f"{FLEET}-4"
LOOP_S = 40.0  # the request loop never runs longer


@pytest.fixture(scope="module")
def lab(tmp_path_factory, testhosts_possible):
    tmp = tmp_path_factory.mktemp("vip-testhosts")
    env = state_env(tmp)
    patch = pytest.MonkeyPatch()
    patch.setenv("XPDCTL_STATE_DIR", env["XPDCTL_STATE_DIR"])
    inventory = tmp / "fleet.yaml"
    gpus = [GpuDecl(vendor="nvidia", count=1), GpuDecl(vendor="amd", count=1), None, None]
    try:
        record = fleet.create(FLEET, 4, gpus, subnet=f"{SUBNET}.0/24", inventory_path=inventory, declare_nics=False)
        data = yaml.safe_load(inventory.read_text())
        data["router"]["hosts"] = [ROUTER1, ROUTER2]
        data["router"]["vip"] = {"address": VIP, "network": f"{SUBNET}.0/24", "interface": "eth0"}
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        yield xpdctl_runner(env), inventory, data, {h.name: h.address for h in record.hosts}
    finally:
        fleet.destroy(FLEET)
        patch.undo()


def _holds_vip(address: str) -> bool:
    done = ssh(FLEET, address, f"ip -o addr show to {VIP}")
    assert done.returncode == 0, done.stderr
    return VIP in done.stdout


def _complete(model: str) -> bool:
    body = json.dumps({"model": model, "prompt": "failover", "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"http://{VIP}:8000/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status == 200 and bool(json.loads(resp.read())["choices"])
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def test_the_vip_moves_when_the_active_router_stops_and_requests_continue(lab):
    xpdctl, inventory, data, addr = lab
    done = xpdctl("up", "-i", inventory, "-o", "json", "--timeout", 600)
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"], (result.get("problems"), done.stderr[-2000:])
    assert _wait(lambda: _holds_vip(addr[ROUTER1]), 30)  # the first router host listed is preferred
    assert not _holds_vip(addr[ROUTER2])
    model = data["model"]["name"]

    log: list[tuple[float, bool]] = []
    start = time.monotonic()
    stopped_at = None
    while time.monotonic() - start < LOOP_S:
        log.append((time.monotonic() - start, _complete(model)))
        if stopped_at is None and time.monotonic() - start > 3:
            stop = ssh(FLEET, addr[ROUTER1], f"systemctl stop xpd-{FLEET}-router")
            assert stop.returncode == 0, stop.stderr
            stopped_at = time.monotonic() - start
        after = [ok for t, ok in log if stopped_at is not None and t > stopped_at]
        if len(after) >= 20 and all(after[-10:]):
            break
        time.sleep(0.05)
    before = [t for t, ok in log if ok and t <= stopped_at]
    failed = [t for t, ok in log if not ok]
    served_after = [t for t, ok in log if ok and t > stopped_at]
    gap = (served_after[0] - stopped_at) if served_after else float("inf")
    print(f"\nVIP failover (test hosts, simulator engines): router stopped at {stopped_at:.1f} s; "
          f"failover {gap:.1f} s (stop -> first success through {ROUTER2}); requests failed {len(failed)}, "
          f"served {len(log) - len(failed)} ({len(before)} before the stop, {len(served_after)} after)")
    assert before and served_after, log
    assert _holds_vip(addr[ROUTER2]) and not _holds_vip(addr[ROUTER1])
    assert all(ok for t, ok in log if t > served_after[0] + 1.0)  # once moved, nothing fails
    assert gap < 15.0  # keepalived: 2 failed checks 1 s apart, then adverts every 1 s
