"""The engines' own load, read from their Prometheus /metrics under vLLM's metric names."""

from __future__ import annotations

import asyncio

import aiohttp

from xpdctl.router.backends import Backend, Load, Registry

_FIELDS = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_usage",
}


def parse_load(text: str) -> Load:
    """Sum queue gauges over every engine the instance exposes (data parallel); take the fullest KV cache."""
    load = Load()
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        field = _FIELDS.get(name)
        if field is None:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if field == "kv_usage":
            load.kv_usage = max(load.kv_usage, value)
        else:
            setattr(load, field, getattr(load, field) + value)
    return load


async def scrape(backend: Backend, timeout_s: float) -> None:
    try:
        async with backend.session.get(backend.url + "/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status == 200:
                backend.load = parse_load(await resp.text())
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass  # health checks judge reachability; a missed scrape keeps the last known load


async def load_loop(registry: Registry, interval_s: float) -> None:
    while True:
        await asyncio.gather(*(scrape(b, max(interval_s, 1.0)) for b in registry))
        await asyncio.sleep(interval_s)
