"""Metric definitions: ours against hand-computed values, and against vLLM's own calculate_metrics."""

from __future__ import annotations

import pytest

from xpdctl.bench.client import RequestOutput
from xpdctl.bench.metrics import compute


def _outputs() -> list[RequestOutput]:
    return [
        RequestOutput(prompt_len=100, success=True, ttft=0.2, latency=1.2, itl=[0.25] * 4, output_tokens=5, start_time=0.0),
        RequestOutput(prompt_len=100, success=True, ttft=0.4, latency=2.4, itl=[0.5] * 4, output_tokens=5, start_time=0.5),
        RequestOutput(prompt_len=100, success=True, ttft=0.3, latency=0.3, itl=[], output_tokens=1, start_time=1.0),
        RequestOutput(prompt_len=100, success=False, error="HTTP 500"),
    ]


def test_definitions_by_hand():
    m = compute(_outputs(), duration_s=4.0)
    assert (m["completed"], m["failed"]) == (3, 1)
    assert (m["total_input_tokens"], m["total_output_tokens"]) == (300, 11)
    # TPOT = (E2EL - TTFT) / (out - 1), only for requests with more than one token: 0.25 s and 0.5 s.
    assert m["mean_tpot_ms"] == pytest.approx(375)
    assert m["median_tpot_ms"] == pytest.approx(375)
    # ITL pools every gap of every request.
    assert m["mean_itl_ms"] == pytest.approx(375)
    assert m["median_e2el_ms"] == pytest.approx(1200)
    assert m["median_ttft_ms"] == pytest.approx(300)
    assert m["total_token_throughput"] == pytest.approx(311 / 4.0)
    assert m["request_throughput"] == pytest.approx(3 / 4.0)
    assert m["p99_e2el_ms"] <= 2400 and m["p50_e2el_ms"] == m["median_e2el_ms"]


def test_a_request_without_usage_counts_one_output_token():
    out = RequestOutput(prompt_len=10, success=True, ttft=0.1, latency=0.5, itl=[0.1] * 4, output_tokens=0)
    m = compute([out], duration_s=1.0)
    assert m["total_output_tokens"] == 1 and m["mean_tpot_ms"] == 0


@pytest.mark.vllm  # importing vLLM takes most of a minute on these machines
def test_same_numbers_as_vllm_bench_serve():
    """vLLM's own calculate_metrics (vllm.benchmarks.serve) on the same outputs gives the same metrics."""
    serve = pytest.importorskip("vllm.benchmarks.serve")
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput

    ours = _outputs()
    theirs = []
    for o in ours:
        r = RequestFuncOutput()
        r.success, r.ttft, r.latency, r.itl, r.output_tokens = o.success, o.ttft, o.latency, list(o.itl), o.output_tokens
        r.prompt_len, r.start_time, r.error = o.prompt_len, o.start_time, o.error
        theirs.append(r)
    metrics, _ = serve.calculate_metrics(input_requests=[None] * len(theirs), outputs=theirs, dur_s=4.0, tokenizer=None,
                                         selected_percentiles=[50, 90, 99], goodput_config_dict={})
    mine = compute(ours, duration_s=4.0)
    assert mine["completed"] == metrics.completed
    assert mine["total_output_tokens"] == metrics.total_output
    assert mine["total_token_throughput"] == pytest.approx(metrics.total_token_throughput)
    for name in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std"):
            assert mine[f"{stat}_{name}_ms"] == pytest.approx(getattr(metrics, f"{stat}_{name}_ms"))
        for p, value in getattr(metrics, f"percentiles_{name}_ms"):
            assert mine[f"p{int(p)}_{name}_ms"] == pytest.approx(value)
