"""Two real KV agents (separate processes, real nixl/UCX) probing each other over loopback.

Two host names on one machine: the agents treat "pf-host" and "dec-host" as two hosts, so the decode
agent fetches the prefill agent's NIXL metadata over HTTP and pulls its buffer across processes,
exactly as between two servers. The side channels are listening sockets (see conftest).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kvagent_helpers import agent_config, free_port, pair, write_config

STARTUP_TIMEOUT_S = 240  # generous: importing nixl on a shared 2-core machine


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(base: str, path: str, log, done) -> bytes:
    """The body of GET base+path once ``done(status, body)`` holds, polling once a second (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, body = _get(f"{base}{path}")
        except OSError:
            status, body = 0, b""
        if status and done(status, body):
            return body
        time.sleep(1)
    pytest.fail(f"agent at {base} not ready within {STARTUP_TIMEOUT_S} s; log:\n{log.read_text()[-3000:]}")


def _all_probed(status: int, body: bytes) -> bool:
    """Every pair carries the result of a successful NIXL probe (agents retry until the peer is up)."""
    pairs = json.loads(body)["pairs"]
    return bool(pairs) and all(p["verified"] for p in pairs)


def _start(config_path, log_path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "xpdctl", "kv-agent", "--config", str(config_path)],
        stdout=log, stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, side_channel, dead_side_channel):
    tmp = tmp_path_factory.mktemp("kvagents")
    pf_port, dec_port = free_port(), free_port()
    pf_url, dec_url = f"http://127.0.0.1:{pf_port}", f"http://127.0.0.1:{dec_port}"
    pairs_for = lambda peer: [  # noqa: E731 - same three pairs in both configs, only peer_agent differs
        pair("prefill-0", "decode-0", "pf-host", "dec-host", side_channel, peer),
        pair("prefill-1", "decode-0", "pf-host", "dec-host", side_channel, peer),
        pair("prefill-2", "decode-0", "pf-host", "dec-host", dead_side_channel, peer),
    ]
    procs = [
        _start(write_config(tmp / "pf.yaml", agent_config("pf-host", pf_port, pairs_for(dec_url))), tmp / "pf.log")
    ]
    try:
        _wait(pf_url, "/health", tmp / "pf.log", lambda status, body: True)
        procs.append(_start(
            write_config(tmp / "dec.yaml", agent_config("dec-host", dec_port, pairs_for(pf_url))), tmp / "dec.log"
        ))
        dec_pairs = json.loads(_wait(dec_url, "/pairs", tmp / "dec.log", _all_probed))["pairs"]
        pf_pairs = json.loads(_wait(pf_url, "/pairs", tmp / "pf.log", _all_probed))["pairs"]
        yield {"pf_url": pf_url, "dec_url": dec_url, "dec_pairs": dec_pairs, "pf_pairs": pf_pairs, "tmp": tmp}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _by_prefill(pairs: list[dict]) -> dict[str, dict]:
    return {p["prefill"]: p for p in pairs}


def test_decode_agent_pulls_verified_bytes_and_reports_transport(cluster):
    pairs = _by_prefill(cluster["dec_pairs"])
    for name in ("prefill-0", "prefill-1"):
        result = pairs[name]
        assert result["ok"] is True, result["reason"]
        assert result["verified"] is True
        assert result["measured_by"] == "dec-host"
        # Two processes on one machine: UCX picks cross-memory attach (or TCP if CMA is not allowed).
        assert result["transport"] in ("cma/memory", "tcp/lo"), result["transport"]
        assert result["bandwidth_gbps"] > 0 and result["latency_ms"] > 0
        for key in ("prefill_url", "decode_url", "reason", "checked_at"):
            assert key in result


def test_unreachable_side_channel_is_broken_with_its_endpoint(cluster, dead_side_channel):
    result = _by_prefill(cluster["dec_pairs"])["prefill-2"]
    assert (result["ok"], result["state"], result["side_channel_reachable"]) == (False, "broken", False)
    assert dead_side_channel in result["reason"] and "not reachable" in result["reason"]
    # The NIXL path itself works: only the engine's side channel is missing.
    assert result["verified"] is True


def test_prefill_agent_relays_the_decode_agents_verdicts(cluster):
    relayed = _by_prefill(cluster["pf_pairs"])
    measured = _by_prefill(cluster["dec_pairs"])
    assert set(relayed) == {"prefill-0", "prefill-1", "prefill-2"}
    for name, result in relayed.items():
        assert result["measured_by"] == "dec-host"
        assert (result["ok"], result["reason"]) == (measured[name]["ok"], measured[name]["reason"])


def test_health_is_503_with_per_pair_detail_while_one_pair_is_broken(cluster):
    status, body = _get(f"{cluster['dec_url']}/health")
    health = json.loads(body)
    assert status == 503
    assert (health["status"], health["pairs_total"], health["pairs_ok"]) == ("unhealthy", 3, 2)
    broken = [p for p in health["pairs"] if not p["ok"]]
    assert [p["prefill"] for p in broken] == ["prefill-2"] and broken[0]["reason"]


def test_metrics_show_one_probe_per_peer_host_and_its_figures(cluster):
    status, body = _get(f"{cluster['dec_url']}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    # Three pairs, all with prefill on pf-host: one probe serves them all.
    assert samples[("xpdctl_kvagent_probes_total", (("peer_host", "pf-host"), ("result", "ok")))] == 1
    assert samples[("xpdctl_kvagent_probe_bandwidth_bytes_per_second", (("peer_host", "pf-host"),))] > 0
    assert samples[("xpdctl_kvagent_probe_latency_seconds", (("peer_host", "pf-host"),))] > 0
    transports = [k for k in samples if k[0] == "xpdctl_kvagent_transport_info"]
    assert len(transports) == 1 and dict(transports[0][1])["peer_host"] == "pf-host"
    ok = {dict(k[1])["prefill"]: v for k, v in samples.items() if k[0] == "xpdctl_kvagent_pair_ok"}
    assert ok == {"prefill-0": 1, "prefill-1": 1, "prefill-2": 0}


def test_tcp_where_rdma_is_expected_is_flagged(cluster, side_channel):
    """A one-shot probe from a third "host" declaring RDMA NICs, with UCX limited to TCP: on a real
    cluster this is what a missing or down RDMA NIC looks like (UCX falls back to TCP silently)."""
    config = agent_config(
        "rdma-host", free_port(),
        [pair("prefill-0", "decode-9", "pf-host", "rdma-host", side_channel, cluster["pf_url"])],
        expect_rdma=True, nics=["mlx5_0"], ucx_env={"UCX_TLS": "tcp"},
    )
    path = write_config(cluster["tmp"] / "rdma.yaml", config)
    run = subprocess.run(
        [sys.executable, "-m", "xpdctl", "kv-agent", "probe", "--config", str(path), "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 3, run.stderr
    [result] = json.loads(run.stdout)["pairs"]
    assert result["transport"] == "tcp/lo" and result["transport_class"] == "tcp"
    assert result["verified"] is True  # the bytes arrived, just not over RDMA
    assert (result["ok"], result["state"]) == (False, "broken")
    assert "not RDMA" in result["reason"]
    assert "prefill-0 -> decode-9" in run.stderr
