"""Tracing across the PD hop: the client's W3C traceparent reaches both legs, and with an OTLP
endpoint configured the router's spans arrive at a real OTLP/HTTP receiver (the test's, decoding
OpenTelemetry's protobuf) in the client's trace."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.otlp import RESPONSE, decode_export
from xpdctl.aioserve import start_site

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"


@pytest.fixture
async def otlp_receiver():
    """``(url, spans)``: an OTLP/HTTP traces endpoint; ``spans`` fills with every span received."""
    spans = []

    async def traces(request: web.Request) -> web.Response:
        spans.extend(decode_export(await request.read()))
        return web.Response(body=RESPONSE, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner, port = await start_site(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}/v1/traces", spans
    await runner.cleanup()


async def _complete(url: str, stream: bool) -> None:
    async with aiohttp.ClientSession() as s:
        body = {"model": "m", "prompt": "hello " * 20, "max_tokens": 4, "stream": stream}
        async with s.post(f"{url}/v1/completions", json=body, headers={"traceparent": TRACEPARENT}) as resp:
            assert resp.status == 200
            await resp.read()


async def _legs_traceparent(sims) -> list[str]:
    async with aiohttp.ClientSession() as s:
        found = []
        for sim in sims:
            async with s.get(f"{sim.url}/sim/requests") as resp:
                found += [r["traceparent"] for r in (await resp.json())["requests"]]
        return found


async def test_traceparent_passes_to_both_legs_unchanged_when_tracing_is_off(cluster):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    await _complete(router.url, stream=False)
    assert await _legs_traceparent([prefill, decode]) == [TRACEPARENT, TRACEPARENT]


@pytest.mark.parametrize("stream", [False, True])
async def test_router_spans_reach_an_otlp_receiver_in_the_clients_trace(cluster, otlp_receiver, monkeypatch,
                                                                         wait_until, stream):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms rather than 5 s
    endpoint, spans = otlp_receiver
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], tracing={"otlp_endpoint": endpoint})
    await _complete(router.url, stream=stream)
    names = {"router request", "router queue", "prefill leg", "kv handoff", "decode leg"}
    await wait_until(lambda: names <= {s.name for _, s in spans}, timeout_s=10)
    by_name = {s.name: s for _, s in spans}
    assert {service for service, _ in spans} == {"xpdctl-router"}
    assert {by_name[n].trace_id.hex() for n in names} == {TRACE_ID}
    root = by_name["router request"]
    assert root.parent_span_id.hex() == PARENT
    for child in ("router queue", "prefill leg", "decode leg"):
        assert by_name[child].parent_span_id == root.span_id
    assert by_name["kv handoff"].parent_span_id == by_name["decode leg"].span_id
    # Each engine got the traceparent of its own leg's span: vLLM's spans become children of it.
    sent = await _legs_traceparent([prefill, decode])
    assert sent == [f"00-{TRACE_ID}-{by_name[leg].span_id.hex()}-01" for leg in ("prefill leg", "decode leg")]
    decode_leg = by_name["decode leg"]
    assert decode_leg.start_time_unix_nano >= by_name["prefill leg"].end_time_unix_nano
