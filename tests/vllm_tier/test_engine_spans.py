"""One request's trace across the PD hop with real engines: the router's spans and both vLLM engines'
own `llm_request` spans reach the session's OTLP receiver (tests/otlp.py) with the client's trace id,
and each engine's span is a child of the router leg that called it.

The session's cluster is rendered with `observability.otlp_traces_endpoint` (tests/conftest.py), so the
engines run with `--otlp-traces-endpoint` and export from their own processes on OpenTelemetry's batch
schedule (5 s by default): the test waits for the spans, bounded."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

pytestmark = pytest.mark.vllm

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
WAIT_S = 60


def _spans_of_trace(traces) -> dict[str, list]:
    found: dict[str, list] = {}
    for service, span in list(traces.spans):
        if span.trace_id.hex() == TRACE_ID:
            found.setdefault(service, []).append(span)
    return found


def test_router_and_both_engines_export_spans_in_the_clients_trace(local_cluster):
    body = {"model": local_cluster.model, "prompt": "tracing across the hop " * 8, "max_tokens": 4, "temperature": 0}
    request = urllib.request.Request(f"{local_cluster.router_url}/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "traceparent": TRACEPARENT})
    with urllib.request.urlopen(request, timeout=600) as resp:
        assert resp.status == 200

    engines = {s["role"]: s["name"] for s in local_cluster.status()["services"] if s["role"] in ("prefill", "decode")}
    wanted = {"xpdctl-router", engines["prefill"], engines["decode"]}
    deadline = time.monotonic() + WAIT_S
    while not wanted <= set(_spans_of_trace(local_cluster.traces)) and time.monotonic() < deadline:
        time.sleep(0.5)
    found = _spans_of_trace(local_cluster.traces)
    assert wanted <= set(found), f"services with spans in the trace after {WAIT_S} s: {sorted(found)}"

    router = {s.name: s for s in found["xpdctl-router"]}
    for role, leg in (("prefill", "prefill leg"), ("decode", "decode leg")):
        (engine_span,) = [s for s in found[engines[role]] if s.name == "llm_request"]
        assert engine_span.parent_span_id == router[leg].span_id, role
