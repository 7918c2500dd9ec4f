"""`xpdctl up`, `status` and `down` end to end on inventory/local.yaml with the simulator as engine
(`engine.server: sim`): real supervisor, router, KV agent and NIXL probe, engines that start in a
second. The same flow on real vLLM engines is the vllm tier (tests/vllm_tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from hashlib import sha256
from pathlib import Path

import pytest
import yaml

from tests.router_reloads import router_config_sha256, router_reloads
from xpdctl.local.statefiles import Layout, live_supervisor, proc_alive, proc_pgid, read_state

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim_cluster(tmp_path, free_port_block):
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    data["engine"]["server"] = "sim"
    data["engine"]["python"] = sys.executable
    del data["model"]["builder"]  # the simulator needs no weights
    data["model"]["path"] = str(tmp_path / "no-model")
    base = free_port_block(6)
    data["pools"]["prefill"]["port"], data["pools"]["decode"]["port"] = base, base + 1
    data["router"]["port"], data["kv"]["agent_port"] = base + 2, base + 3
    data["kv"]["side_channel_port"] = base + 4  # and base + 5
    inventory = tmp_path / "local-sim.yaml"
    inventory.write_text(yaml.safe_dump(data))
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp_path / "state"))

    def xpdctl(*args, check=True):
        done = subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(inventory)], env=env,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"xpdctl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def start(*args):
        return subprocess.Popen([sys.executable, "-m", "xpdctl", *args, "-i", str(inventory)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    xpdctl.start = start
    yield xpdctl, tmp_path / "state" / "local", inventory
    xpdctl("down", check=False)


def test_up_killed_midway_then_up_status_up_again_down(sim_cluster):
    xpdctl, state_dir, inventory = sim_cluster
    layout = Layout(state_dir / "services")
    # `up` killed while it waits for the KV path: the services it started keep running under the
    # supervisor, and the next `up` adopts them instead of starting a second copy.
    first = xpdctl.start("up", "--timeout", "120")
    deadline = time.monotonic() + 120
    while not ((state := read_state(layout)) and {u.state for u in state.units} == {"running"} and len(state.units) == 3):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    first.kill()
    first.wait()
    engines = {u.name: u.pid for u in read_state(layout).units}

    up = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)
    assert up["changes"] == {"xpd-local-prefill-0": "unchanged", "xpd-local-decode-0": "unchanged",
                             "xpd-local-kv-agent": "unchanged", "xpd-local-router": "started"}
    assert {u.name: u.pid for u in read_state(layout).units if u.name in engines} == engines
    assert set(up["timings_s"]) == {"engines", "kv_paths", "services", "smoke"}
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
    again_status = json.loads(xpdctl("status", "-o", "json").stdout)
    assert {s["name"]: s["pid"] for s in again_status["services"]} == {s["name"]: s["pid"] for s in status["services"]}

    # A changed router config reloads the router (ExecReload=: SIGHUP) and touches nothing else.
    data = yaml.safe_load(inventory.read_text())
    data["router"]["conditional_disagg"] = True
    inventory.write_text(yaml.safe_dump(data))
    changed = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)["changes"]
    assert changed == {"xpd-local-prefill-0": "unchanged", "xpd-local-decode-0": "unchanged",
                       "xpd-local-kv-agent": "unchanged", "xpd-local-router": "reloaded"}
    status = json.loads(xpdctl("status", "-o", "json").stdout)
    router_pid = {s["name"]: s["pid"] for s in status["services"]}["xpd-local-router"]
    assert router_pid == {s["name"]: s["pid"] for s in again_status["services"]}["xpd-local-router"]
    assert router_reloads(up["router_url"]) == 1
    router_yaml = state_dir / "rendered/hosts/local/etc/xpdctl/router.yaml"
    assert router_config_sha256(up["router_url"]) == sha256(router_yaml.read_bytes()).hexdigest()

    pids = {p for s in status["services"] for p in map(int, filter(str.isdigit, os.listdir("/proc")))
            if proc_pgid(p) == s["pid"]}
    pids.add(live_supervisor(layout))
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


def test_port_held_by_another_program_is_refused_before_anything_starts(sim_cluster):
    import socket

    xpdctl, state_dir, inventory = sim_cluster
    port = yaml.safe_load(inventory.read_text())["router"]["port"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = xpdctl("up", check=False)
    assert done.returncode == 2
    assert f"127.0.0.1:{port} (xpd-local-router) already in use" in done.stderr
    assert read_state(Layout(state_dir / "services")) is None
