"""Failure semantics with faults injected into simulator engines (REFERENCE section 5)."""

import asyncio
import json

import aiohttp

BODY = {"model": "m", "prompt": "tell me a story about routers", "max_tokens": 8}


async def _faults(http, sim, **faults):
    async with http.post(sim.url + "/sim/faults", json=faults) as resp:
        assert resp.status == 200


def _events(raw: bytes) -> list[bytes]:
    return [e for e in raw.split(b"\n\n") if e.strip()]


async def test_prefill_down_is_retried_on_another_prefill(cluster, http):
    alive, doomed = await cluster.sim("prefill"), await cluster.sim("prefill")
    decode = await cluster.sim("decode")
    router = await cluster.router([doomed, alive], [decode], health={"interval_s": 60})
    await doomed.stop()
    for _ in range(6):  # ties alternate: the dead prefill is tried 3 times, which takes it out
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200, await resp.text()
    metrics = router.router.metrics.registry
    assert metrics.get_sample_value("xpd_router_retries_total", {"leg": "prefill"}) >= 1
    assert metrics.get_sample_value("xpd_router_backend_state", {"url": doomed.url, "pool": "prefill", "state": "healthy"}) == 0
    assert len(decode.engine.log) == 6


async def test_prefill_failing_twice_gives_an_openai_error(cluster, http):
    prefills = [await cluster.sim("prefill"), await cluster.sim("prefill"), await cluster.sim("prefill")]
    decode = await cluster.sim("decode")
    router = await cluster.router(prefills, [decode], health={"interval_s": 60})
    for p in prefills:
        await _faults(http, p, fail_status=500)
    async with http.post(router.url + "/v1/completions", json=BODY, headers={"X-Request-Id": "doomed"}) as resp:
        assert resp.status == 502 and resp.headers["X-Request-Id"] == "doomed"
        error = (await resp.json())["error"]
    assert error["code"] == 502 and "answered HTTP 500" in error["message"]
    assert sum(len(p.engine.log) for p in prefills) == 2  # the first try and exactly one retry
    assert not decode.engine.log


async def test_all_prefills_unreachable_is_503(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], health={"interval_s": 60})
    await prefill.stop()
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 503
        assert "unreachable" in (await resp.json())["error"]["message"]


async def test_decode_failure_before_first_byte_is_502_and_not_retried(cluster, http):
    prefill = await cluster.sim("prefill")
    decodes = [await cluster.sim("decode"), await cluster.sim("decode")]
    router = await cluster.router([prefill], decodes)
    for d in decodes:
        await _faults(http, d, fail_status=503)
    for stream in (False, True):
        async with http.post(router.url + "/v1/completions", json={**BODY, "stream": stream}) as resp:
            assert resp.status == 502
            assert resp.headers["Content-Type"].startswith("application/json")
            assert "answered HTTP 503" in (await resp.json())["error"]["message"]
    assert sum(len(d.engine.log) for d in decodes) == 2  # one decode leg per request


async def test_decode_dying_mid_stream_ends_with_an_sse_error_without_migration(cluster, http):
    prefill = await cluster.sim("prefill")
    decodes = [await cluster.sim("decode"), await cluster.sim("decode")]
    router = await cluster.router([prefill], decodes, migration={"enabled": False})
    for d in decodes:
        await _faults(http, d, fail_after_tokens=3)
    async with http.post(router.url + "/v1/completions", json={**BODY, "stream": True}) as resp:
        assert resp.status == 200
        events = _events(await resp.read())
    assert len(events) == 5 and events[-1] == b"data: [DONE]"
    error = json.loads(events[-2].removeprefix(b"data: "))["error"]
    assert error["code"] == 502 and "mid-stream" in error["message"]
    assert all(b'"text"' in e for e in events[:3])
    assert sum(len(d.engine.log) for d in decodes) == 1  # never retried once bytes were sent


async def test_slow_prefill_hits_the_first_byte_timeout(cluster, http):
    prefill, decode = await cluster.sim("prefill", ttft_ms=3000), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], timeouts={"first_byte_s": 0.2}, health={"interval_s": 60})
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 504
        assert "timed out" in (await resp.json())["error"]["message"]


async def test_slow_decode_first_token_hits_the_first_byte_timeout(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", kv_pull_ms=3000)
    router = await cluster.router([prefill], [decode], timeouts={"first_byte_s": 0.2})
    async with http.post(router.url + "/v1/completions", json={**BODY, "stream": True}) as resp:
        assert resp.status == 504


async def test_idle_decode_mid_stream_hits_the_idle_timeout(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], timeouts={"idle_s": 0.2, "first_byte_s": 5})
    await _faults(http, decode, stall_after_tokens=2, stall_ms=3000)
    async with http.post(router.url + "/v1/completions", json={**BODY, "stream": True}) as resp:
        events = _events(await resp.read())
    assert b'"code": 504' in events[-2] and events[-1] == b"data: [DONE]"


async def test_client_disconnect_mid_stream_aborts_the_decode(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=20)
    router = await cluster.router([prefill], [decode])
    async with http.post(router.url + "/v1/completions", json={**BODY, "max_tokens": 1000, "stream": True},
                         headers={"X-Request-Id": "leaver"}) as resp:
        await resp.content.readline()
        resp.close()
    await wait_until(lambda: decode.engine.log and decode.engine.log[-1]["outcome"] != "running")
    assert decode.engine.log[-1]["outcome"] == "aborted"
    await wait_until(lambda: router.router.registry.decodes[0].in_flight == 0)
    assert router.router.admission.active == 0


async def test_client_disconnect_during_prefill_aborts_it_and_skips_decode(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill", ttft_ms=2000), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    with_timeout = aiohttp.ClientTimeout(total=0.3)
    try:
        async with http.post(router.url + "/v1/completions", json=BODY, timeout=with_timeout) as resp:
            await resp.read()
    except asyncio.TimeoutError:
        pass
    await wait_until(lambda: prefill.engine.log and prefill.engine.log[-1]["outcome"] != "running")
    assert prefill.engine.log[-1]["outcome"] == "aborted"
    await asyncio.sleep(0.1)
    assert not decode.engine.log


async def test_full_queue_answers_429_with_retry_after(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=100)
    router = await cluster.router([prefill], [decode], queue={"max_in_flight": 1, "max_waiting": 1, "wait_timeout_s": 30})
    slow = {**BODY, "max_tokens": 10}
    first = asyncio.create_task(http.post(router.url + "/v1/completions", json=slow))
    await wait_until(lambda: router.router.admission.active == 1)
    second = asyncio.create_task(http.post(router.url + "/v1/completions", json=slow))
    await wait_until(lambda: router.router.admission.waiting == 1)
    async with http.post(router.url + "/v1/completions", json=slow) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert (await resp.json())["error"]["type"] == "RateLimitError"
    for task in (first, second):
        resp = await task
        assert resp.status == 200
        resp.release()
    assert router.router.metrics.registry.get_sample_value("xpd_router_queue_rejected_total", {"reason": "full"}) == 1


async def test_queue_wait_timeout_is_503(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=100)
    router = await cluster.router([prefill], [decode], queue={"max_in_flight": 1, "max_waiting": 4, "wait_timeout_s": 0.1})
    first = asyncio.create_task(http.post(router.url + "/v1/completions", json={**BODY, "max_tokens": 10}))
    await wait_until(lambda: router.router.admission.active == 1)
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 503 and "Retry-After" in resp.headers
    (await first).release()
    assert router.router.admission.waiting == 0


async def test_prefill_without_kv_transfer_params_is_a_contract_failure(cluster, http):
    """A stand-in for vLLM started without --kv-transfer-config: it answers, with kv_transfer_params null."""
    from aiohttp import web

    from xpdctl.aioserve import start_site

    async def plain_vllm(request):
        return web.json_response({"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": " a"}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                                  "kv_transfer_params": None})

    async def healthy(request):
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/completions", plain_vllm)
    app.router.add_get("/health", healthy)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        decode = await cluster.sim("decode")
        router = await cluster.router(backends=[{"url": f"http://127.0.0.1:{port}", "pool": "prefill"},
                                                {"url": decode.url, "pool": "decode"}])
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 502
            assert "kv_producer" in (await resp.json())["error"]["message"]
        assert not decode.engine.log
    finally:
        await runner.cleanup()


async def test_decode_only_fallback_is_explicit(cluster, http):
    prefill, decode, both = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("both")
    strict = await cluster.router([prefill], [decode], health={"interval_s": 60})
    lenient = await cluster.router([prefill], [decode], health={"interval_s": 60}, decode_only_on_prefill_failure=True)
    await _faults(http, prefill, fail_status=500)
    async with http.post(strict.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 502
    async with http.post(lenient.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200
        served = (await resp.json())["choices"][0]["text"]
    async with http.post(both.url + "/v1/completions", json=BODY) as resp:
        assert served == (await resp.json())["choices"][0]["text"]
    assert "kv_transfer_params" not in decode.engine.log[-1]["body"]
    assert lenient.router.metrics.registry.get_sample_value(
        "xpd_router_disagg_decisions_total", {"decision": "decode_only", "reason": "prefill_failed"}) == 1


async def test_unanswered_connect_hits_the_connect_timeout(cluster, http, unanswered):
    """A prefill whose listen queue is full (a hung host): SYNs go unanswered, so connect times out."""
    doomed, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([doomed], [decode], timeouts={"connect_s": 0.3}, health={"interval_s": 60})
    await doomed.stop()
    async with unanswered(doomed.port):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 504
            assert "ConnectionTimeoutError" in (await resp.json())["error"]["message"]
