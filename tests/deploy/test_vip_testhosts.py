"""Two routers behind one address on test hosts (the shared fleet of tests/doors_fleet.py):
keepalived (Debian's real package, from the test hosts' strict mirror) on both router hosts, VRRP
unicast over the fleet's bridge, through the host firewall.

Under load (WORKERS clients sending completions to the virtual address one after the other, each
waiting RETRY_S after a failure as a client retrying would, all bounded by LOOP_S), the host holding
the address loses first its router (keepalived's /health check moves the address), then, after it
is back, its network (the other host stops hearing its adverts). The numbers are printed for each,
in seconds from the moment the stop began: how long the stop took, when requests failed (the
outage: from sending the first request that failed to the last failed answer), the first success of
a request sent after the stop, requests failed (in flight on the lost host, or sent before the
address moved) and served.
Engines are the simulator. Both routers are back, the first holding the address, at the end.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.doors_fleet import FLEET, ROUTER1, ROUTER2, ROUTER_UNIT, VIP
from xpdctl.testhosts import fleet

pytestmark = pytest.mark.testhosts

WORKERS = 4
LOOP_S = 30.0  # no load loop runs longer
CALM_S = 3.0  # load before the stop, and the run of successes after it that ends the loop
REQUEST_TIMEOUT_S = 3.0
RETRY_S = 0.1


def _complete(model: str, key: str) -> bool:
    body = json.dumps({"model": model, "prompt": "failover", "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"http://{VIP}:8000/v1/completions", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {key}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as resp:
            return resp.status == 200 and bool(json.loads(resp.read())["choices"])
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def _failover_under_load(doors_fleet, what: str, stop: Callable[[], None]) -> dict:
    """Runs the load, calls ``stop`` after CALM_S, ends CALM_S into an unbroken run of successes
    after it (or at LOOP_S); prints and returns the numbers, in seconds from the moment ``stop`` was
    called (the router's shutdown or the link's loss begins)."""
    model, key = doors_fleet.data["model"]["name"], doors_fleet.keys["tenant"]
    log: list[tuple[float, float, bool]] = []  # (sent, answered, ok), seconds from the stop
    t0 = time.monotonic() + CALM_S
    done = threading.Event()

    def client() -> None:
        while not done.is_set() and time.monotonic() - t0 < LOOP_S - CALM_S:
            sent = time.monotonic() - t0
            ok = _complete(model, key)
            log.append((sent, time.monotonic() - t0, ok))
            if not ok:
                time.sleep(RETRY_S)

    workers = [threading.Thread(target=client) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(max(0.0, t0 - time.monotonic()))
        stop()  # returns once the router has stopped, or the host's link is down
        stopped = time.monotonic() - t0
        while time.monotonic() - t0 < LOOP_S - CALM_S:
            time.sleep(0.2)
            after = [(a, ok) for s, a, ok in list(log) if s > stopped]
            last_failure = max((a for _, a, ok in log if not ok), default=stopped)
            if any(ok for _, ok in after) and time.monotonic() - t0 - last_failure > CALM_S:
                break
    finally:
        done.set()
        for worker in workers:
            worker.join()
    failures = [(s, a) for s, a, ok in log if not ok]
    first_failure = min((s for s, _ in failures), default=0.0)
    last_failure = max((a for _, a in failures), default=0.0)
    served_after = sorted(a for s, a, ok in log if ok and s > stopped)
    numbers = {
        "stop_took_s": stopped,
        # What clients saw: from sending the first request that failed to the last failed answer.
        "outage_s": last_failure - first_failure if failures else 0.0,
        "first_success_after_s": served_after[0] if served_after else float("inf"),
        "last_failure_s": last_failure,
        "failed": len(failures),
        "served": sum(ok for _, _, ok in log),
        "served_before": sum(ok for s, _, ok in log if s <= 0),
        "served_after": len(served_after),
    }
    # Once one request sent after the stop succeeded (the address moved), every later one does.
    numbers["failed_once_moved"] = sum(not ok for s, _, ok in log if s > numbers["first_success_after_s"])
    print(f"\nVIP failover ({what}; test hosts, simulator engines, {WORKERS} clients, {REQUEST_TIMEOUT_S:g} s "
          f"timeout): the stop took {stopped:.1f} s; requests failed from {first_failure:+.1f} s to "
          f"{last_failure:+.1f} s (outage {numbers['outage_s']:.1f} s); first success of a request sent after "
          f"the stop {numbers['first_success_after_s']:+.1f} s; requests failed {numbers['failed']}, served "
          f"{numbers['served']} ({numbers['served_before']} sent before the stop began, {len(served_after)} "
          f"after it had happened)")
    return numbers


def _status_vip(doors_fleet) -> dict:
    done = doors_fleet.xpdctl("status", "-i", doors_fleet.inventory, "-o", "json")
    return json.loads(done.stdout)["vip"]


def test_the_first_router_host_holds_the_address_and_status_says_so(doors_fleet):
    assert _wait(lambda: doors_fleet.holds_vip(ROUTER1), 30)  # the first router host listed is preferred
    assert not doors_fleet.holds_vip(ROUTER2)
    assert _status_vip(doors_fleet) == {"address": VIP, "holders": [ROUTER1]}


def test_the_address_moves_when_the_active_router_stops_under_load(doors_fleet):
    numbers = _failover_under_load(
        doors_fleet, "router stopped",
        lambda: doors_fleet.ssh(ROUTER1, f"systemctl stop {ROUTER_UNIT}").check_returncode())
    try:
        assert numbers["served_before"] and numbers["served_after"], numbers
        assert doors_fleet.holds_vip(ROUTER2) and not doors_fleet.holds_vip(ROUTER1)
        assert _status_vip(doors_fleet) == {"address": VIP, "holders": [ROUTER2]}
        # keepalived: 2 failed checks 1 s apart, then the other host's advert; a request sent into
        # that window fails (connection refused at the stopping router), none after it.
        assert numbers["outage_s"] < 10.0 and numbers["failed_once_moved"] == 0
    finally:
        doors_fleet.ssh(ROUTER1, f"systemctl start {ROUTER_UNIT}")
    assert _wait(lambda: doors_fleet.holds_vip(ROUTER1), 30)  # back, and preferred again


def test_the_address_moves_when_the_active_host_drops_off_the_network_under_load(doors_fleet):
    numbers = _failover_under_load(doors_fleet, "host off the network",
                                   lambda: fleet.set_faults(FLEET, ROUTER1, reachable=False))  # fmt: skip
    try:
        assert numbers["served_before"] and numbers["served_after"], numbers
        assert doors_fleet.holds_vip(ROUTER2)
        # VRRP: the backup takes over after 3 missed adverts (1 s apart) plus its skew; requests in
        # flight on the lost host fail at the client's timeout.
        assert numbers["outage_s"] < 10.0 and numbers["failed_once_moved"] == 0
    finally:
        fleet.set_faults(FLEET, ROUTER1, reachable=True)
    assert _wait(lambda: doors_fleet.holds_vip(ROUTER1) and not doors_fleet.holds_vip(ROUTER2), 30)
