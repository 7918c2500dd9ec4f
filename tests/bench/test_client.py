"""The streaming client against the simulator engine (real HTTP and SSE on loopback)."""

from __future__ import annotations

import aiohttp
import pytest

from xpdctl.bench.client import _messages, stream_completion
from xpdctl.bench.prompts import random_prompts
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start


@pytest.fixture
async def sim():
    running = await start(SimConfig(role="both", model="m", port=0, ttft_ms=2, itl_ms=1))
    yield running
    await running.stop()


async def test_streamed_request_is_timed_like_vllm_bench(sim):
    prompt = random_prompts(1, 50)[0]
    async with aiohttp.ClientSession() as session:
        out = await stream_completion(session, sim.url + "/v1/completions", "m", prompt.text, prompt.tokens, 12, "rid-1")
    assert out.success and out.error == ""
    assert out.output_tokens == 12 and out.prompt_len == 50  # from the server's usage
    assert len(out.itl) == 11  # one gap between each pair of streamed outputs
    assert 0 < out.ttft <= out.latency
    assert out.latency == pytest.approx(out.ttft + sum(out.itl))
    sent = next(r for r in (await _log(sim)) if r["request_id"] == "rid-1")
    assert sent["body"]["ignore_eos"] is True and sent["body"]["stream_options"] == {"include_usage": True}


async def _log(sim) -> list[dict]:
    async with aiohttp.ClientSession() as session, session.get(sim.url + "/sim/requests") as resp:
        data = await resp.json()
    return data["requests"] if isinstance(data, dict) else data


async def test_errors_are_recorded_not_raised(sim):
    async with aiohttp.ClientSession() as session:
        wrong = await stream_completion(session, sim.url + "/v1/completions", "other", "hi", 1, 4)
        dead = await stream_completion(session, "http://127.0.0.1:9/v1/completions", "m", "hi", 1, 4)
    assert not wrong.success and wrong.error.startswith("HTTP 404")
    assert not dead.success and "ClientConnectorError" in dead.error


def test_sse_messages_split_across_chunks():
    buf = bytearray(b'data: {"a": 1}\n\ndata: {"b"')
    assert _messages(buf) == ['{"a": 1}']
    buf.extend(b': 2}\n\n: ping\n\ndata: [DONE]\n\n')
    assert _messages(buf) == ['{"b": 2}', "[DONE]"]
    assert buf == bytearray()
