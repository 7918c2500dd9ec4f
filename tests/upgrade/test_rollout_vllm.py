"""A rolling restart of the real-vLLM local cluster's decode pool (one instance) under streaming load:
a surge decode instance (other name and ports) serves while the only one restarts, so no request
fails. The cluster is the vllm tier's session cluster (tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from upgrade_helpers import Load

from tests.ports import free_port_block


@pytest.mark.vllm
# soak: 25-45 minutes here (two more vLLM starts beside the load): more than CI's 90 minutes can
# spare. Run it with `pytest -m "vllm and soak"`.
@pytest.mark.soak
@pytest.mark.timeout(5400)
def test_rolling_restart_of_single_decode_under_load(local_cluster):
    state = Path(local_cluster.env["XPDCTL_STATE_DIR"]) / local_cluster.up["cluster"]
    manifest = json.loads((state / "rendered" / "manifest.json").read_text())
    ports = [s["port"] for h in manifest["hosts"].values() for s in h["services"] if s.get("port")]
    ports += [s["side_channel_port"] for h in manifest["hosts"].values() for s in h["services"]
              if s.get("side_channel_port")]
    # Surge ports: the cluster's block moved to a free block below the ephemeral range.
    offset = free_port_block(max(ports) - min(ports) + 1) - min(ports)
    token = local_cluster.env["XPDCTL_ROUTER_ADMIN_TOKEN"]
    # The load lasts as long as the rollout (bounded), and a request may take as long as the router
    # waits for a first byte (600 s): on 2 starved cores a slow answer is slow, not failed.
    # One client, 2 s between requests: a vLLM worker spins (sched_yield) for 1 s after each step, so
    # back-to-back requests keep both engines' workers spinning on this machine's 2 cores, and the
    # surge instance then took over 40 minutes to start (2026-11-27, three runs). Every step of the
    # rollout (drain, wait-idle, stop, start, undrain) still happens with requests arriving.
    with Load(local_cluster.router_url, token, local_cluster.model, workers=1, pause_s=2.0, max_seconds=4800,
              max_requests=50_000, request_timeout_s=600) as traffic:
        done = subprocess.run(
            [sys.executable, "-m", "xpdctl", "upgrade", "-i", str(local_cluster.inventory), "--pool", "decode",
             "--restart", "--alt-port-offset", str(offset), "--timeout", "2400", "-o", "json"],
            env=local_cluster.env, capture_output=True, text=True, timeout=4800)
    # For the record of a run (pytest -s): what the load saw.
    print(f"\nload: {traffic.ok} ok, {len(traffic.failures)} failed; decodes serving "
          f"{min(traffic.serving, default=0)}-{max(traffic.serving, default=0)}; median latency "
          f"{sorted(traffic.latencies)[len(traffic.latencies) // 2] if traffic.latencies else 0:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [p["name"] for p in result["phases"]] == ["surge up", "batch 1", "surge down"]
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 1
    assert max(traffic.serving) == 2  # the surge instance served beside the old one
    status = local_cluster.status()
    assert status["healthy"] is True
    assert not [s for s in status["services"] if s["name"].endswith("-next")]
