"""The warm-up request goes straight to two engines: with an internal API key they refuse it unless it
carries the key. Engines are simulators, which check VLLM_API_KEY under /v1 as vLLM does."""

import asyncio

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim
from xpdctl.upgrade.warmup import warm_pair


async def test_warm_up_presents_the_engines_internal_key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "internal-key")
    sims = [await start_sim(SimConfig(role=role, model="m", port=0, ttft_ms=1, itl_ms=1)) for role in ("prefill", "decode")]
    try:
        prefill, decode = (s.url for s in sims)
        with pytest.raises(ExecutionError, match="HTTP 401"):
            await asyncio.to_thread(warm_pair, prefill, decode, "m", timeout_s=10)
        assert await asyncio.to_thread(warm_pair, prefill, decode, "m", timeout_s=10, api_key="internal-key") > 0
    finally:
        for s in sims:
            await s.stop()
