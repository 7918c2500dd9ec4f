"""`xpdctl sim --timestamps`: the engines' arrival and token times travel to the client (prefill stamps
inside kv_transfer_params, decode stamps in the final usage chunk), and without the flag nothing
changes. Ordering only, no durations: the stamps share the client's clock, so causality must hold."""

import json
import time

from xpdctl.router import pdcontract
from xpdctl.sim import stamps

BODY = {"model": "m", "prompt": "The quick brown fox", "max_tokens": 5, "stream": True,
        "stream_options": {"include_usage": True}}


async def _events(resp) -> list[dict]:
    return [json.loads(line.removeprefix(b"data: ")) async for line in resp.content
            if line.strip() and line.strip() != b"data: [DONE]"]


def _content(events: list[dict]) -> list[tuple]:
    """What a stream says, without the ids and stamps that differ per engine."""
    return [(e["choices"], e.get("usage")) for e in events]


async def _pd(http, prefill, decode, body: dict) -> tuple[dict, dict | list[dict]]:
    """(prefill answer, decode answer: the SSE events of a stream, else the JSON) sent as the router sends them."""
    async with http.post(prefill.url + "/v1/completions", json=pdcontract.prefill_request(body, chat=False),
                         headers={"X-Request-Id": "ts-1"}) as resp:
        assert resp.status == 200
        first = await resp.json()
    leg = pdcontract.decode_request(body, pdcontract.kv_transfer_params(first))
    async with http.post(decode.url + "/v1/completions", json=leg, headers={"X-Request-Id": "ts-1"}) as resp:
        assert resp.status == 200
        return first, (await _events(resp) if body.get("stream") else await resp.json())


async def test_stamps_travel_from_prefill_through_decode_to_the_usage_chunk(sims, http):
    prefill, decode = await sims("prefill", timestamps=True), await sims("decode", timestamps=True)
    sent = time.monotonic()
    first, events = await _pd(http, prefill, decode, BODY)
    received = time.monotonic()

    p = first["kv_transfer_params"][stamps.KEY]
    assert sent <= p["arrived"] <= p["answered"] <= received
    assert all(stamps.KEY not in e for e in events[:-1])
    assert events[-1]["usage"]["completion_tokens"] == 5
    s = events[-1][stamps.KEY]
    assert s["prefill"] == p
    assert p["answered"] <= s["arrived"] <= s["first_token"] <= s["last_token"] <= received


async def test_whole_decode_answer_carries_stamps_at_the_top_level(sims, http):
    prefill, decode = await sims("prefill", timestamps=True), await sims("decode", timestamps=True)
    first, answer = await _pd(http, prefill, decode, {**BODY, "stream": False})
    s = answer[stamps.KEY]
    assert s["prefill"] == first["kv_transfer_params"][stamps.KEY]
    assert s["arrived"] <= s["first_token"] <= s["last_token"]


async def test_aggregated_instance_stamps_without_a_prefill(sims, http):
    both = await sims("both", timestamps=True)
    async with http.post(both.url + "/v1/completions", json=BODY) as resp:
        s = (await _events(resp))[-1][stamps.KEY]
    assert set(s) == {"arrived", "first_token", "last_token"}


async def test_without_the_flag_answers_are_unchanged(sims, http):
    prefill, decode = await sims("prefill", timestamps=True), await sims("decode", timestamps=True)
    plain_prefill, plain_decode = await sims("prefill"), await sims("decode")
    stamped_first, stamped = await _pd(http, prefill, decode, BODY)
    plain_first, plain = await _pd(http, plain_prefill, plain_decode, BODY)

    assert stamps.KEY not in plain_first["kv_transfer_params"]
    assert all(stamps.KEY not in e for e in plain)
    assert _content(plain) == _content(stamped)


async def test_a_stream_without_usage_has_nowhere_to_carry_stamps(sims, http):
    both = await sims("both", timestamps=True)
    async with http.post(both.url + "/v1/completions", json={**BODY, "stream_options": None}) as resp:
        events = await _events(resp)
    assert len(events) == 5 and all(stamps.KEY not in e for e in events)
