"""The dashboard's panels on real vLLM engines: a real Prometheus on the session cluster's rendered
scrape config, after PD requests, answers every panel that reads vLLM's own metrics, the KV transfer
panels (vLLM's `vllm:nixl_*` histograms, which the simulator does not export) included. This is where a
renamed vLLM metric would show (tests/observability/test_live_prometheus.py covers the rest on the
simulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import ports, prometheus
from vllm_client import call

pytestmark = pytest.mark.vllm


def test_every_panel_on_vllm_metrics_answers_with_real_engines(local_cluster, prompt_of, tmp_path):
    observability = Path(local_cluster.env["XPDCTL_STATE_DIR"]) / "local" / "rendered" / "observability"
    panels = [(title, expr) for title, expr in prometheus.panel_queries(observability) if "vllm:" in expr]
    assert any("vllm:nixl_bytes_transferred" in expr for _, expr in panels)
    with prometheus.running(observability, ports.free_port_block(1), tmp_path) as prom:
        prometheus.wait("engines scraped", lambda: prometheus.query(prom, 'up{job="xpd-engines"} == 1'), 60)
        for n in (40, 300):
            assert call(local_cluster.router_url, local_cluster.model, prompt_of(n), chat=False, stream=False).status == 200

        def empty():
            return [title for title, expr in panels if not prometheus.query(prom, expr)]

        prometheus.wait("every vLLM panel answers", lambda: not empty(), 30)
        assert empty() == []
