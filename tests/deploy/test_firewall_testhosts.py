"""The host firewall on test hosts (the shared fleet of tests/doors_fleet.py): probes from the
outsider (a host on the same network that is neither a cluster host nor in ``firewall.control``),
from a router host and from this machine (the control host).

nftables is real (Debian's package, served by the test hosts' strict mirror; each host filters in its
own network namespace); the engines are the simulator. Rules change under a connection held open
from outside: it keeps working while new connections from that address are refused. Leaves
``firewall.clients`` narrowed to this machine (the last test).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from tests.doors_fleet import CONTROL, DECODE, OUTSIDER, PREFILL, ROUTER1, ROUTER2, VIP

pytestmark = pytest.mark.testhosts

ROUTERS = f"{ROUTER1},{ROUTER2}"

# Run on a test host: GET each URL, print one JSON line per URL: its status or the error's name.
PROBE = r"""
import json, sys, urllib.error, urllib.request
for url in sys.argv[1:]:
    try:
        print(json.dumps([url, urllib.request.urlopen(url, timeout=5).status]))
    except urllib.error.HTTPError as exc:
        print(json.dumps([url, exc.code]))
    except OSError as exc:
        print(json.dumps([url, type(getattr(exc, "reason", exc)).__name__]))
"""

# Run on a test host: one keep-alive connection to the router (never reopened: auto_open off), GET
# /health every 0.1 s until its stdin closes.
HOLD = r"""
import http.client, select, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
c.connect()
c.auto_open = 0
while not select.select([sys.stdin], [], [], 0.1)[0]:
    c.request("GET", "/health")
    r = c.getresponse(); r.read()
    print(r.status, flush=True)
"""

# Every engine-host port, with paths outside /v1 (where vLLM checks no key: only the firewall closes
# them): the engines' HTTP ports, the NIXL side channel and the KV agent.
def _engine_urls(fleet) -> list[str]:
    prefill, decode = fleet.address(PREFILL), fleet.address(DECODE)
    return [f"http://{prefill}:8100/health", f"http://{prefill}:8100/metrics", f"http://{decode}:8200/health",
            f"http://{decode}:8200/metrics", f"http://{prefill}:8788/pairs", f"http://{decode}:8788/pairs",
            f"http://{prefill}:5600/", f"http://{decode}:5600/"]  # fmt: skip


def _probe(fleet, host: str, urls: list[str]) -> dict:
    done = fleet.ssh(host, f"python3 -c '{PROBE}' {' '.join(urls)}")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(line) for line in done.stdout.splitlines())


def test_an_outside_address_reaches_only_the_routers_port(doors_fleet):
    urls = _engine_urls(doors_fleet)
    found = _probe(doors_fleet, OUTSIDER, [*urls, f"http://{VIP}:8000/health", f"http://{VIP}:8000/metrics"])
    assert found == {**dict.fromkeys(urls, "ConnectionRefusedError"), f"http://{VIP}:8000/health": 200,
                     f"http://{VIP}:8000/metrics": 200}  # fmt: skip
    for router in (ROUTER1, ROUTER2):  # also at each router host's own address
        assert _probe(doors_fleet, OUTSIDER, [f"http://{doors_fleet.address(router)}:8000/health"]) == {
            f"http://{doors_fleet.address(router)}:8000/health": 200}


def test_a_router_host_and_the_control_host_reach_every_port(doors_fleet):
    urls = _engine_urls(doors_fleet)
    found = _probe(doors_fleet, ROUTER2, urls)
    http = [u for u in urls if ":5600/" not in u]
    assert {u: found[u] for u in http} == dict.fromkeys(http, 200)
    # The side channels speak ZMQ, not HTTP: answered, not refused.
    assert all(found[u] != "ConnectionRefusedError" for u in urls if ":5600/" in u), found
    for url in http:  # from this machine
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200


def test_the_rules_are_xpdctls_own_table_pass_nft_c_load_at_boot_and_survive_a_reload(doors_fleet):
    for host in (PREFILL, DECODE, ROUTER1, ROUTER2):
        done = doors_fleet.ssh(host, "nft -c -f /etc/nftables.d/xpdctl.nft && systemctl is-enabled xpd-firewall"
                                     " && systemctl reload xpd-firewall && nft list tables")  # fmt: skip
        assert done.returncode == 0, (host, done.stderr)
        assert "table inet xpdctl" in done.stdout and "enabled" in done.stdout
    urls = _engine_urls(doors_fleet)  # after the reload: the same answers
    assert _probe(doors_fleet, OUTSIDER, urls) == dict.fromkeys(urls, "ConnectionRefusedError")
    assert _probe(doors_fleet, ROUTER1, urls[:1]) == {urls[0]: 200}


def test_a_rule_change_keeps_a_held_connection_and_a_rerun_undoes_only_a_hand_edit(doors_fleet):
    """The change (firewall.clients) touches the router hosts' rules only: provisioned alone."""
    router = doors_fleet.address(ROUTER1)
    holder = subprocess.Popen([*doors_fleet.ssh_argv(OUTSIDER), f"python3 -c '{HOLD}' {router} 8000"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # the connection is open and in use
        data = doors_fleet.data
        data["firewall"]["clients"] = [f"{CONTROL}/32"]  # the outsider is no client any more
        doors_fleet.write(data)
        changed = doors_fleet.xpdctl("provision", "-i", doors_fleet.inventory, "--tags", "firewall", "--limit", ROUTERS,
                                     "-o", "json")  # fmt: skip
        assert changed.returncode == 0, changed.stdout[-2000:] + changed.stderr[-2000:]
        time.sleep(2)  # and still in use under the new rules
        out, err = holder.communicate("", timeout=60)
    finally:
        holder.kill()
    statuses = out.split()
    assert holder.returncode == 0 and len(statuses) > 20 and set(statuses) == {"200"}, (statuses[-5:], err[-500:])
    # A new connection from the outsider is refused now; the rules were replaced, not added to.
    url = f"http://{router}:8000/health"
    assert _probe(doors_fleet, OUTSIDER, [url]) == {url: "ConnectionRefusedError"}
    # A rule added by hand on one router host: the next run loads the rendered rules there again, and
    # changes nothing on the other.
    edit = doors_fleet.ssh(ROUTER1, "nft add rule inet xpdctl input tcp dport 9 accept")
    assert edit.returncode == 0, edit.stderr
    again = doors_fleet.xpdctl("provision", "-i", doors_fleet.inventory, "--tags", "firewall", "--limit", ROUTERS,
                               "-o", "json")  # fmt: skip
    hosts = json.loads(again.stdout)["hosts"]
    assert hosts[ROUTER1]["changed"] > 0 and hosts[ROUTER2]["changed"] == 0, hosts
    assert "dport 9 " not in doors_fleet.ssh(ROUTER1, "nft list table inet xpdctl").stdout
