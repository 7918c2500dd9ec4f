"""The local cluster under failure and at the end: the decode engine is killed, clients get a clean
error, `status` shows it, the supervisor restarts it and traffic recovers; `down` leaves no process.

These run after every other test of the session (tests/vllm_tier/conftest.py orders them): they break
and finally stop the shared cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml

from vllm_client import call
from xpdctl.local.statefiles import Layout, live_supervisor, proc_alive, proc_pgid

pytestmark = pytest.mark.vllm

RECOVERY_TIMEOUT_S = 1500


def service(status: dict, role: str) -> dict:
    return next(s for s in status["services"] if s["role"] == role)


def router_timeout_s(cluster) -> float:
    """The longest the router may take to answer when decode is gone: connect plus first-byte timeout."""
    state = Path(cluster.env["XPDCTL_STATE_DIR"]) / cluster.up["cluster"]
    config = yaml.safe_load(next(state.glob("rendered/hosts/*/etc/xpdctl/router.yaml")).read_text())
    timeouts = config.get("timeouts") or {}
    return float(timeouts.get("connect_s", 5.0)) + float(timeouts.get("first_byte_s", 600.0))


def test_up_again_changes_nothing(local_cluster):
    before = {s["name"]: s["pid"] for s in local_cluster.status()["services"]}
    again = json.loads(local_cluster.xpdctl("up", "-o", "json").stdout)
    assert set(again["changes"].values()) == {"unchanged"}
    assert {s["name"]: s["pid"] for s in local_cluster.status()["services"]} == before


def _fill_the_decodes_prefix_index(cluster, prompt_of) -> None:
    """The decode caches the blocks it pulled once they arrive (vLLM 0.32
    vllm/v1/core/sched/scheduler.py `_update_waiting_for_remote_kv`: `cache_blocks`), and publishes
    them as BlockStored: a PD request whose prompt spans full blocks puts them in the router's index."""
    from test_prefix_routing_vllm import router_config, scrape, value, wait_for

    decode = next(b for b in router_config(cluster)["backends"] if b["pool"] == "decode")
    series = f'xpd_router_kv_index_blocks{{pool="decode",url="{decode["url"]}"}}'
    prompt = f"lifecycle {uuid.uuid4().hex} " + prompt_of(3 * decode["block_size"])
    got = call(cluster.router_url, cluster.model, prompt, chat=False, stream=False, max_tokens=4)
    assert got.status == 200, got.body
    wait_for(lambda: value(scrape(cluster.router_url), series) > 0, 60,
             "the decode's pulled blocks never reached the router's index")


def test_killed_decode_gives_clients_a_clean_error_and_status_shows_it(local_cluster, prompt_of):
    # What the router knows of the decode's cache must be dropped when it dies (checked below, after
    # the restart): make sure there is something to drop, whatever ran before.
    _fill_the_decodes_prefix_index(local_cluster, prompt_of)
    before = service(local_cluster.status(), "decode")
    assert (before["state"], before["health"]) == ("running", "healthy")
    os.kill(before["pid"], signal.SIGKILL)
    while proc_alive(before["pid"]):
        time.sleep(0.1)

    bound = router_timeout_s(local_cluster)
    for chat, stream in [(False, False), (True, True)]:
        got = call(local_cluster.router_url, local_cluster.model, prompt_of(50), chat=chat, stream=stream,
                   timeout_s=bound)
        assert got.status in (502, 503, 504), (got.status, got.body, got.text)
        assert got.body["error"]["message"]  # OpenAI-style error object

    status = local_cluster.status()
    after = service(status, "decode")
    assert after["last_exit"] == "signal SIGKILL"
    assert (after["state"], after["health"]) != ("running", "healthy")
    assert status["healthy"] is False
    assert service(status, "prefill")["health"] == "healthy"


def test_decode_restarts_and_traffic_recovers(local_cluster, aggregated_url, prompt_of):
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        decode = service(local_cluster.status(), "decode")
        if decode["state"] == "running" and decode["health"] == "healthy":
            break
        assert time.monotonic() < deadline, f"decode did not come back: {decode}"
        time.sleep(3)
    assert decode["restarts"] == 1

    prompt = prompt_of(300)
    expected = call(aggregated_url, local_cluster.model, prompt, chat=False, stream=False)
    # The router re-admits decode after its health checks pass, and the new decode engine
    # handshakes with prefill on its first request: retry until both have happened.
    while True:
        got = call(local_cluster.router_url, local_cluster.model, prompt, chat=False, stream=True)
        if got.status == 200:
            break
        assert time.monotonic() < deadline, f"traffic did not recover: {got.status} {got.body}"
        time.sleep(3)
    assert got.text == expected.text
    assert local_cluster.status()["healthy"] is True


def test_the_restarted_decodes_prefix_index_was_dropped_then_rebuilt(local_cluster):
    """The decode came back at the same address with an empty cache: the router must not have kept
    trusting what the old process announced (tests/vllm_tier/test_prefix_routing_vllm.py has the rest)."""
    from test_prefix_routing_vllm import router_config, scrape, value

    decode = next(b for b in router_config(local_cluster)["backends"] if b["pool"] == "decode")
    metrics = scrape(local_cluster.router_url)
    url = decode["url"]
    dropped = sum(value(metrics, f'xpd_router_kv_index_resets_total{{reason="{reason}",url="{url}"}}')
                  for reason in ("unhealthy", "restart"))
    assert dropped >= 1
    assert value(metrics, f'xpd_router_kv_index_state{{pool="decode",state="ok",url="{url}"}}') == 1


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_down_leaves_no_process_behind(local_cluster):
    state_dir = Path(local_cluster.env["XPDCTL_STATE_DIR"]) / local_cluster.up["cluster"]
    status = local_cluster.status()
    groups = {s["pid"] for s in status["services"] if s["pid"]}
    assert len(groups) == len(status["services"]) == 4
    ours = {int(p) for p in os.listdir("/proc") if p.isdigit() and proc_pgid(int(p)) in groups}
    supervisor = live_supervisor(Layout(state_dir / "services"))
    assert supervisor is not None
    ours.add(supervisor)
    assert len(ours) > len(groups)  # vLLM runs its engine core and workers as child processes

    down = local_cluster.xpdctl("down")
    assert "stopped 4 service(s)" in down.stdout

    assert sorted(p for p in ours if proc_alive(p)) == []
    assert [s["url"] for s in status["services"] if _port_open(s["url"])] == []
    after = local_cluster.status()
    assert {s["state"] for s in after["services"]} == {"stopped"}
    assert after["router"]["state"] == "stopped"
