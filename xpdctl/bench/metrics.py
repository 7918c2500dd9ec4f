"""Aggregate metrics of one benchmark run, with ``vllm bench serve``'s definitions and key names.

- TPOT per request = (E2EL - TTFT) / (output tokens - 1), for requests with more than one token.
- ITL: every inter-output gap of every request, pooled.
- Throughputs divide by the run's wall-clock duration; total token throughput counts input and
  output tokens (the report's TPS).
- Output tokens come from the server's usage; a request without usage counts one token, as vLLM
  does when it has no tokenizer.
Keys: ``mean_/median_/std_/pNN_{ttft,tpot,itl,e2el}_ms`` and the counters of vLLM's result JSON.
"""

from __future__ import annotations

import numpy as np

from xpdctl.bench.client import RequestOutput

METRICS = ("ttft", "tpot", "itl", "e2el")
PERCENTILES = (50, 90, 99)


def _stats(name: str, values_s: list[float]) -> dict[str, float]:
    arr = np.asarray(values_s or [0.0]) * 1000
    stats = {f"mean_{name}_ms": float(arr.mean()), f"median_{name}_ms": float(np.median(arr)),
             f"std_{name}_ms": float(arr.std())}
    stats.update({f"p{p}_{name}_ms": float(np.percentile(arr, p)) for p in PERCENTILES})
    return stats


def compute(outputs: list[RequestOutput], duration_s: float) -> dict[str, float]:
    ttfts, tpots, itls, e2els = [], [], [], []
    total_in = total_out = completed = 0
    for o in outputs:
        if not o.success:
            continue
        n = o.output_tokens or 1
        completed += 1
        total_in += o.prompt_len
        total_out += n
        if n > 1:
            tpots.append((o.latency - o.ttft) / (n - 1))
        ttfts.append(o.ttft)
        itls.extend(o.itl)
        e2els.append(o.latency)
    result: dict[str, float] = {
        "duration": duration_s,
        "completed": completed,
        "failed": len(outputs) - completed,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": completed / duration_s,
        "output_throughput": total_out / duration_s,
        "total_token_throughput": (total_in + total_out) / duration_s,
    }
    for name, values in zip(METRICS, (ttfts, tpots, itls, e2els)):
        result.update(_stats(name, values))
    return result
