"""A real Prometheus (Debian's package) on the rendered files, scraping a running cluster: `xpdctl up`
of inventory/local.yaml with simulator engines (`engine.server: sim`: no model compute; everything
else real: supervisor, router, KV agent, NIXL probe) on loopback.

Every rendered target is up; every dashboard panel's PromQL and every alert's metric return data;
killing the decode engine fires XpdEngineDown once its `for:` has passed, not before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import prometheus
from xpdctl.observability import alerts

REPO = Path(__file__).resolve().parents[2]
SCRAPE_S, DOWN_FOR_S = 1, 4
# The simulator moves no KV bytes, so it does not export vLLM's vllm:nixl_bytes_transferred: the vllm
# tier checks those panels on real engines (tests/vllm_tier/test_dashboard.py).
NOT_SIMULATED = ("vllm:nixl_bytes_transferred",)


def _complete(router: str) -> int:
    body = json.dumps({"model": "tiny-gpt-oss", "prompt": "hello " * 40, "max_tokens": 8}).encode()
    req = urllib.request.Request(f"{router}/v1/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests import ports

    tmp = tmp_path_factory.mktemp("obs-live")
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    data["engine"].update(server="sim", python=sys.executable, restart_sec=120)  # a killed engine stays down
    del data["model"]["builder"]  # the simulator needs no weights
    data["model"]["path"] = str(tmp / "no-model")
    base = ports.free_port_block(7)
    data["pools"]["prefill"]["port"], data["pools"]["decode"]["port"] = base, base + 1
    data["router"]["port"], data["kv"]["agent_port"] = base + 2, base + 3
    data["kv"]["side_channel_port"] = base + 4  # and base + 5
    data["observability"] = {"scrape_interval_s": SCRAPE_S, "evaluation_interval_s": SCRAPE_S, "down_for_s": DOWN_FOR_S}
    inventory = tmp / "local-sim.yaml"
    inventory.write_text(yaml.safe_dump(data))
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"))

    def xpdctl(*args):
        done = subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(inventory)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"xpdctl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
        return done

    try:
        up = json.loads(xpdctl("up", "-o", "json", "--timeout", "120").stdout)
        rendered = tmp / "state" / "local" / "rendered" / "observability"
        with prometheus.running(rendered, base + 6, tmp) as prom_url:
            yield {"prom": prom_url, "router": up["router_url"], "rendered": rendered, "xpdctl": xpdctl}
    finally:
        subprocess.run([sys.executable, "-m", "xpdctl", "down", "-i", str(inventory)], env=env,
                       capture_output=True, timeout=120)


def _targets(prom: str) -> list[dict]:
    try:
        return prometheus.get(f"{prom}/api/v1/targets")["data"]["activeTargets"]
    except OSError:
        return []


def test_targets_up_panels_and_alerts_answer_then_engine_down_fires(cluster):
    prom, router = cluster["prom"], cluster["router"]
    groups = [g for f in sorted((cluster["rendered"] / "prometheus" / "targets").glob("*.json"))
              for g in json.loads(f.read_text())]
    expected = {g["labels"]["service"] for g in groups}
    assert expected == {"xpd-local-prefill-0", "xpd-local-decode-0", "xpd-local-kv-agent", "xpd-local-router"}

    def all_up():
        found = _targets(prom)
        return len(found) == len(expected) and all(t["health"] == "up" for t in found) and found

    found = prometheus.wait("every rendered target up", all_up, 60)
    assert {t["labels"]["service"] for t in found} == expected
    engine_labels = {t["labels"]["service"]: t["labels"] for t in found if t["labels"]["job"] == "xpd-engines"}
    assert engine_labels["xpd-local-decode-0"]["pool"] == "decode"
    assert engine_labels["xpd-local-decode-0"]["vendor"] == "cpu"
    assert engine_labels["xpd-local-decode-0"]["generation"] == engine_labels["xpd-local-prefill-0"]["generation"]

    assert [_complete(router) for _ in range(5)] == [200] * 5
    time.sleep(3 * SCRAPE_S)  # scraped after the requests

    # Kill the decode engine (its supervisor waits restart_sec=120 before starting it again).
    status = json.loads(cluster["xpdctl"]("status", "-o", "json").stdout)
    decode_pid = next(s["pid"] for s in status["services"] if s["name"] == "xpd-local-decode-0")
    os.killpg(decode_pid, signal.SIGKILL)
    killed = time.monotonic()
    assert _complete(router) >= 500  # a failed request: the 5xx and upstream-error series exist now

    def engine_down_firing():
        answer = prometheus.get(f"{prom}/api/v1/alerts")["data"]["alerts"]
        return [a for a in answer if a["labels"]["alertname"] == alerts.ENGINE_DOWN and a["state"] == "firing"]

    firing = prometheus.wait("XpdEngineDown firing", engine_down_firing, DOWN_FOR_S + 20, step_s=0.2)
    took = time.monotonic() - killed
    # Not before its for: (4 s); at most a scrape plus two evaluations (1 s each) and slack after it.
    assert DOWN_FOR_S <= took <= DOWN_FOR_S + 3 * SCRAPE_S + 5, took
    assert [a["labels"]["service"] for a in firing] == ["xpd-local-decode-0"]

    # Every panel's query returns data (on a 1-minute window: the requests above are inside it).
    empty = [(title, expr) for title, expr in prometheus.panel_queries(cluster["rendered"])
             if not any(n in expr for n in NOT_SIMULATED) and not prometheus.query(prom, expr)]
    assert empty == []
    # Every alert's metric exists, and every alert's expression runs.
    assert [name for name, metric in alerts.METRIC.items() if not prometheus.query(prom, metric)] == []
    rules = yaml.safe_load((cluster["rendered"] / "prometheus" / "rules" / "xpdctl-alerts.yml").read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        prometheus.query(prom, rule["expr"])
