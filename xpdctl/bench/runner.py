"""One grid point with our own client: warm-up, then Poisson arrivals capped at max concurrency.

Arrivals follow ``vllm bench serve``: exponential gaps at the request rate, rescaled so the n-th
request is sent at n/rate; each request waits for a concurrency slot and is timed from when it is
sent, not from its arrival. Warm-up requests (the first prompt, repeated) go first and are not counted.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np

from xpdctl.bench import metrics
from xpdctl.bench.client import RequestOutput, stream_completion
from xpdctl.bench.prompts import Prompt
from xpdctl.errors import ExecutionError


@dataclass(frozen=True)
class PointSpec:
    isl: int
    osl: int
    concurrency: int
    num_prompts: int
    request_rate: float = 8.0  # the report's REQ_RATE; math.inf sends all at once
    warmups: int = 2
    seed: int = 0


def arrival_offsets(n: int, rate: float, seed: int) -> list[float]:
    if math.isinf(rate):
        return [0.0] * n
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    cumulative = np.cumsum(gaps)
    return (cumulative * (n / rate) / cumulative[-1]).tolist()


async def run_point(base_url: str, model: str, spec: PointSpec, prompts: list[Prompt],
                    on_done: Callable[[int], None] | None = None, timeout_s: float = 6 * 3600) -> tuple[dict, list[RequestOutput]]:
    url = base_url.rstrip("/") + "/v1/completions"
    tick = on_done or (lambda n: None)
    slots = asyncio.Semaphore(spec.concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

        async def one(prompt: Prompt, rid: str) -> RequestOutput:
            async with slots:
                out = await stream_completion(session, url, model, prompt.text, prompt.tokens, spec.osl, rid)
            tick(1)
            return out

        warm = await asyncio.gather(*(one(prompts[0], f"bench-warmup-{i}") for i in range(spec.warmups)))
        if warm and not any(w.success for w in warm):
            # The endpoint is not serving: say why once instead of timing N failures.
            raise ExecutionError(f"{url}: every warm-up request failed ({warm[0].error}); "
                                 "check that the cluster is up and serves this model")

        start = time.perf_counter()
        tasks = []
        for i, offset in enumerate(arrival_offsets(spec.num_prompts, spec.request_rate, spec.seed)):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(prompts[i % len(prompts)], f"bench-{spec.seed}-{i}")))
        outputs = list(await asyncio.gather(*tasks))
        duration = time.perf_counter() - start
    return metrics.compute(outputs, duration), outputs
