"""A decode leg that never reached its decode (connect refused or timed out) is retried on another decode
that pairs with the prefill, whose KV lease is still waiting; a decode that got the request never is.

The simulator decodes pull the KV lease from the simulator prefill as vLLM's NixlConnector does, so a
retried leg that finishes shows the lease was still there for the second decode."""

import asyncio
import json

BODY = {"model": "m", "prompt": "tell me a story about routers", "max_tokens": 8}
# Active checks far apart: a stopped decode stays "healthy" in the router, as between two checks.
RARE_CHECKS = {"interval_s": 60, "unhealthy_threshold": 1000}


def _sample(router, name, labels):
    return router.router.metrics.registry.get_sample_value(name, labels) or 0


async def _post(http, router, stream):
    async with http.post(router.url + "/v1/completions", json={**BODY, "stream": stream}) as resp:
        return resp.status, await resp.read()


async def test_a_stopped_decode_is_retried_on_another_decode(cluster, http):
    prefill = await cluster.sim("prefill")
    live, doomed = await cluster.sim("decode"), await cluster.sim("decode")
    router = await cluster.router([prefill], [live, doomed], health=RARE_CHECKS)
    await doomed.stop()
    for stream in (False, True, False, True, False, True):
        status, raw = await _post(http, router, stream)
        assert status == 200, raw
        if stream:
            assert raw.rstrip().endswith(b"data: [DONE]") and b'"error"' not in raw
        else:
            assert json.loads(raw)["choices"][0]["text"]
    assert len(live.engine.log) == 6
    assert all(r["outcome"] == "finished" for r in live.engine.log)
    refused = _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "connect"})
    assert refused >= 1  # the tie rotation sends some requests to the stopped decode first
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == refused


async def test_a_request_without_prefill_leg_is_retried_too(cluster, http):
    """Conditional disaggregation sends short prompts to a decode whole: nothing was sent, so retrying is safe."""
    prefill = await cluster.sim("prefill")
    live, doomed = await cluster.sim("decode"), await cluster.sim("decode")
    router = await cluster.router([prefill], [live, doomed], health=RARE_CHECKS,
                                  conditional_disagg={"enabled": True, "min_prompt_tokens": 10_000})
    await doomed.stop()
    for stream in (False, True, False, True):
        status, raw = await _post(http, router, stream)
        assert status == 200, raw
    assert len(live.engine.log) == 4 and not prefill.engine.log
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) >= 1


async def test_decode_attempts_are_bounded(cluster, http):
    """Three stopped decodes: the first try and two retries (``decode_connect_retries``), then 503."""
    prefill = await cluster.sim("prefill")
    decodes = [await cluster.sim("decode") for _ in range(3)]
    router = await cluster.router([prefill], decodes, health=RARE_CHECKS)
    for d in decodes:
        await d.stop()
    status, raw = await _post(http, router, stream=True)
    assert status == 503 and "unreachable" in json.loads(raw)["error"]["message"]
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == 2
    assert _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "connect"}) == 3


async def test_the_only_decode_is_tried_once_more_then_503(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], health=RARE_CHECKS)
    await decode.stop()
    status, raw = await _post(http, router, stream=False)
    assert status == 503
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == 1
    assert _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "connect"}) == 2


async def test_retries_can_be_turned_off(cluster, http):
    prefill = await cluster.sim("prefill")
    live, doomed = await cluster.sim("decode"), await cluster.sim("decode")
    router = await cluster.router([prefill], [live, doomed], health=RARE_CHECKS, decode_connect_retries=0)
    await doomed.stop()
    statuses = [(await _post(http, router, stream=False))[0] for _ in range(4)]
    assert 503 in statuses  # the tie rotation sends some requests to the stopped decode
    assert _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "connect"}) == statuses.count(503)
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == 0


async def test_a_decode_whose_connect_never_completes_is_retried(cluster, http, unanswered):
    """A decode whose listen queue is full (a host too loaded to accept): the connect times out
    (aiohttp's ConnectionTimeoutError) and the leg moves to the other decode."""
    prefill = await cluster.sim("prefill")
    live, doomed = await cluster.sim("decode"), await cluster.sim("decode")
    router = await cluster.router([prefill], [live, doomed], timeouts={"connect_s": 0.3}, health=RARE_CHECKS)
    await doomed.stop()
    async with unanswered(doomed.port):
        for stream in (False, True, False, True):
            status, raw = await _post(http, router, stream)
            assert status == 200, raw
    assert len(live.engine.log) == 4 and all(r["outcome"] == "finished" for r in live.engine.log)
    timeouts = _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "timeout"})
    assert timeouts >= 1
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == timeouts


class _TakesAndBreaks:
    """A decode that passes health checks, then takes each completion request and breaks the connection:
    at once (``answer=False``), or after its status line and headers (``answer=True``)."""

    def __init__(self, answer: bool):
        self.answer = answer
        self.posts = 0

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            if not head.startswith("POST"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            length = next(int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length"))
            await reader.readexactly(length)
            self.posts += 1
            if self.answer:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                await writer.drain()
        finally:
            writer.transport.abort()

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()


async def test_a_decode_that_got_the_request_is_never_retried(cluster, http):
    """Both decodes read the request (so they may have pulled the KV) and break: one without answering,
    one after its status line. Each request reaches exactly one decode and the client gets 502. (With
    migration on, the default, the request starts over on another pair: tests/router/test_migration.py.)"""
    prefill = await cluster.sim("prefill")
    decodes = [await _TakesAndBreaks(answer=False).start(), await _TakesAndBreaks(answer=True).start()]
    try:
        router = await cluster.router(backends=[{"url": prefill.url, "pool": "prefill"}] +
                                      [{"url": d.url, "pool": "decode"} for d in decodes], health=RARE_CHECKS,
                                      migration={"enabled": False})
        for stream in (False, True, False, True):
            status, raw = await _post(http, router, stream)
            assert status == 502, raw
            assert json.loads(raw)["error"]["code"] == 502
    finally:
        for d in decodes:
            await d.stop()
    assert sum(d.posts for d in decodes) == 4
    assert _sample(router, "xpd_router_retries_total", {"leg": "decode"}) == 0


async def test_the_only_prefill_is_tried_once_more_when_it_could_not_be_connected_to(cluster, http):
    """Same reasoning for the prefill leg: a connect that failed sent nothing, so the only prefill gets a
    second try (a connect that timed out under load may well succeed then) before the client sees 503."""
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], health=RARE_CHECKS)
    await prefill.stop()
    status, raw = await _post(http, router, stream=False)
    assert status == 503 and "prefill" in json.loads(raw)["error"]["message"]
    assert _sample(router, "xpd_router_upstream_errors_total", {"pool": "prefill", "kind": "connect"}) == 2
    assert _sample(router, "xpd_router_retries_total", {"leg": "prefill"}) == 1
    assert not decode.engine.log
