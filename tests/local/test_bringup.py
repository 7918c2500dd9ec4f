"""`xpdctl up`, `status` and `down` end to end on inventory/local.yaml with the simulator as engine
(`engine.server: sim`): real supervisor, router, KV agent and NIXL probe, engines that start in a
second. The same flow on real vLLM engines is the vllm tier (tests/vllm_tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xpdctl.local.statefiles import Layout, live_supervisor, proc_alive, proc_pgid

REPO = Path(__file__).resolve().parents[2]


def free_ports(count):
    import socket

    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def sim_cluster(tmp_path):
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    data["engine"]["server"] = "sim"
    data["engine"]["python"] = sys.executable
    del data["model"]["builder"]  # the simulator needs no weights
    data["model"]["path"] = str(tmp_path / "no-model")
    prefill, decode, router, agent = free_ports(4)
    data["pools"]["prefill"]["port"], data["pools"]["decode"]["port"] = prefill, decode
    data["router"]["port"], data["kv"]["agent_port"] = router, agent
    data["kv"]["side_channel_port"] = free_ports(1)[0]
    inventory = tmp_path / "local-sim.yaml"
    inventory.write_text(yaml.safe_dump(data))
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp_path / "state"))

    def xpdctl(*args, check=True):
        done = subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(inventory)], env=env,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"xpdctl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    yield xpdctl, tmp_path / "state" / "local", inventory
    xpdctl("down", check=False)


def test_up_status_up_again_down(sim_cluster):
    xpdctl, state_dir, inventory = sim_cluster
    up = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)
    assert set(up["changes"].values()) == {"started"}
    assert len(up["changes"]) == 4
    assert up["smoke"]["completion_tokens"] > 0
    assert [p["ok"] for p in up["kv_pairs"]] == [True]
    assert up["curl"].startswith(f"curl -s {up['router_url']}/v1/completions")

    status = json.loads(xpdctl("status", "-o", "json").stdout)
    assert status["healthy"] is True
    assert status["router"] == {"url": up["router_url"], "state": "running", "health": "healthy"}
    assert {s["role"]: s["state"] for s in status["services"]} == {
        "prefill": "running", "decode": "running", "kv-agent": "running", "router": "running"}
    table = xpdctl("status").stdout
    assert "xpd-local-router" in table and "cluster healthy" in table

    again = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)
    assert set(again["changes"].values()) == {"unchanged"}
    assert {s["name"]: s["pid"] for s in json.loads(xpdctl("status", "-o", "json").stdout)["services"]} == {
        s["name"]: s["pid"] for s in status["services"]}

    # A changed router config restarts the router alone.
    data = yaml.safe_load(inventory.read_text())
    data["router"]["conditional_disagg"] = True
    inventory.write_text(yaml.safe_dump(data))
    changed = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)["changes"]
    assert changed == {"xpd-local-prefill-0": "unchanged", "xpd-local-decode-0": "unchanged",
                       "xpd-local-kv-agent": "unchanged", "xpd-local-router": "restarted"}
    status = json.loads(xpdctl("status", "-o", "json").stdout)

    pids = {p for s in status["services"] for p in map(int, filter(str.isdigit, os.listdir("/proc")))
            if proc_pgid(p) == s["pid"]}
    pids.add(live_supervisor(Layout(state_dir / "services")))
    assert "stopped 4 service(s)" in xpdctl("down").stdout
    assert [p for p in pids if proc_alive(p)] == []
    assert {s["state"] for s in json.loads(xpdctl("status", "-o", "json").stdout)["services"]} == {"stopped"}


def test_missing_engine_interpreter_is_refused_with_the_install_command(sim_cluster):
    xpdctl, _, inventory = sim_cluster
    data = yaml.safe_load(inventory.read_text())
    data["engine"]["python"] = "/nonexistent/bin/python"
    inventory.write_text(yaml.safe_dump(data))
    done = xpdctl("up", check=False)
    assert done.returncode == 2
    assert "run ./install.sh" in done.stderr
