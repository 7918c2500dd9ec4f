"""Request migration against simulator engines: a decode killed mid-answer, the client's answer equal to
an uninterrupted run; requests that may not migrate; the bounds. The simulator stands in for vLLM here
(its text is a chained function of the token ids, as a greedy model's); tests/vllm_tier/test_migration_vllm.py
does the same on real engines."""

import asyncio
import json

import pytest

from xpdctl.router import migration

PROMPT = "Explain prefill and decode disaggregation in two sentences"
CHAT = [{"role": "user", "content": "hello, who are you?"}]
HEADERS = {"X-Request-Id": "same"}


def _request(chat: bool, stream: bool, **extra) -> tuple[str, dict]:
    body = {"model": "m", "max_tokens": 30, "stream": stream, "min_tokens": 2, "temperature": 0, **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update({"messages": CHAT} if chat else {"prompt": PROMPT})
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


def _events(raw: bytes) -> list:
    return [e.removeprefix(b"data: ") if e.endswith(b"[DONE]") else _uncreated(json.loads(e.removeprefix(b"data: ")))
            for e in raw.split(b"\n\n") if e.strip()]


def _uncreated(answer: dict) -> dict:
    """Two runs a second apart differ in ``created`` only."""
    return {**answer, "created": 0} if "created" in answer else answer


def _sample(router, name, labels):
    return router.router.metrics.registry.get_sample_value(name, labels) or 0


async def _faults(http, sim, **faults):
    async with http.post(sim.url + "/sim/faults", json=faults) as resp:
        assert resp.status == 200


async def _aggregated(cluster, engines, **config):
    """A router over aggregated engines only (each computes the prompt itself)."""
    return await cluster.router([], engines, decode_only_on_prefill_failure=True, **config)


async def _read_events(resp, count: int) -> bytes:
    got = b""
    while got.count(b"\n\n") < count:
        chunk = await resp.content.readany()
        assert chunk, got
        got += chunk
    return got


async def _running(decodes, wait_until):
    await wait_until(lambda: any(d.engine.jobs for d in decodes))
    return next(d for d in decodes if d.engine.jobs)


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_decode_killed_mid_answer_is_continued_on_another_pair(cluster, http, wait_until, chat, stream):
    prefill, both = await cluster.sim("prefill", itl_ms=10), await cluster.sim("both", itl_ms=0)
    decodes = [await cluster.sim("decode", itl_ms=10), await cluster.sim("decode", itl_ms=10)]
    router = await cluster.router([prefill], decodes)
    path, body = _request(chat, stream)
    async with http.post(both.url + path, json=body, headers=HEADERS) as resp:
        expected = await resp.read()

    async def call() -> bytes:
        async with http.post(router.url + path, json=body, headers=HEADERS) as resp:
            assert resp.status == 200
            if not stream:
                return await resp.read()
            got = await _read_events(resp, 4)  # a few tokens reached the client
            (await _running(decodes, wait_until)).engine.crash()
            return got + await resp.read()

    task = asyncio.create_task(call())
    if not stream:
        victim = await _running(decodes, wait_until)
        await asyncio.sleep(0.05)
        victim.engine.crash()
    got = await task
    crashed = [d for d in decodes if d.engine.crashed]
    assert len(crashed) == 1 and crashed[0].engine.log[0]["outcome"] in ("dropped", "aborted")
    if stream:  # event for event what the uninterrupted run sent: no token lost or twice, one id, usage of one answer
        assert _events(got) == _events(expected)
        assert b"token_ids" not in got  # the router asked for them, the client did not
    else:
        assert _uncreated({**json.loads(got), "kv_transfer_params": None}) == _uncreated(json.loads(expected))
    kind = "stream" if stream else "whole"
    assert _sample(router, "xpd_router_migrations_total", {"kind": kind}) == 1
    if stream:
        assert _sample(router, "xpd_router_migration_gap_seconds_count", {}) == 1
        (continued,) = [r for d in decodes if not d.engine.crashed for r in d.engine.log]
        assert continued["path"] == "/v1/completions" and isinstance(continued["body"]["prompt"], list)
        # through the PD path again: the prefill computed prompt plus the tokens sent, the decode pulled it
        assert len(prefill.engine.log) == 2 and prefill.engine.log[-1]["body"]["prompt"] == continued["body"]["prompt"]
        assert continued["body"]["kv_transfer_params"]["do_remote_prefill"] is True


async def test_the_client_who_asked_for_token_ids_gets_them_across_the_seam(cluster, http, wait_until):
    both = await cluster.sim("both", itl_ms=0)
    decodes = [await cluster.sim("both", itl_ms=10), await cluster.sim("both", itl_ms=10)]
    router = await _aggregated(cluster, decodes)
    path, body = _request(True, True, return_token_ids=True)
    async with http.post(both.url + path, json=body, headers=HEADERS) as resp:
        expected = _events(await resp.read())
    async with http.post(router.url + path, json=body, headers=HEADERS) as resp:
        got = await _read_events(resp, 5)
        (await _running(decodes, wait_until)).engine.crash()
        got = _events(got + await resp.read())
    ids = [i for e in got if isinstance(e, dict) for c in e["choices"] for i in c.get("token_ids") or ()]
    assert ids == [i for e in expected if isinstance(e, dict) for c in e["choices"] for i in c.get("token_ids") or ()]
    assert len(ids) == 30 and got[0]["prompt_token_ids"] == expected[0]["prompt_token_ids"]


async def test_a_stream_that_breaks_before_its_first_byte_starts_over(cluster, http, wait_until):
    decodes = [await cluster.sim("both", ttft_ms=300), await cluster.sim("both", ttft_ms=300)]
    router = await _aggregated(cluster, decodes)
    path, body = _request(False, True)
    task = asyncio.create_task(http.post(router.url + path, json=body))
    (await _running(decodes, wait_until)).engine.crash()  # its status line went out, no token yet
    async with await task as resp:
        assert resp.status == 200
        events = _events(await resp.read())
    assert events[-1] == b"[DONE]" and "".join(e["choices"][0]["text"] for e in events[:-2]).count(" ") == 30
    assert _sample(router, "xpd_router_migrations_total", {"kind": "restart"}) == 1


@pytest.mark.parametrize(("extra", "reason"), [
    ({"n": 2}, "n"),
    ({"logprobs": 1}, "logprobs"),
    ({"temperature": 0.8, "seed": 7}, "seeded_sampling"),
    ({"stop": ["\n\n"]}, "stop_strings"),
    ({"frequency_penalty": 0.5}, "output_penalties"),
])
async def test_requests_whose_semantics_forbid_migration_end_as_without_it(cluster, http, extra, reason):
    decodes = [await cluster.sim("both"), await cluster.sim("both")]
    router = await _aggregated(cluster, decodes)
    for d in decodes:
        await _faults(http, d, fail_after_tokens=3)
    path, body = _request(False, True, **extra)
    async with http.post(router.url + path, json=body) as resp:
        events = _events(await resp.read())
    assert events[-2]["error"]["code"] == 502 and events[-1] == b"[DONE]"
    assert _sample(router, "xpd_router_not_migrated_total", {"reason": reason}) == 1
    assert sum(len(d.engine.log) for d in decodes) == 1
    (leg,) = [r for d in decodes for r in d.engine.log]
    assert "return_token_ids" not in leg["body"]  # not asked for: the events pass unparsed


async def test_attempts_are_bounded(cluster, http):
    decodes = [await cluster.sim("both") for _ in range(4)]
    router = await _aggregated(cluster, decodes, migration={"max_attempts": 2})
    for d in decodes:
        await _faults(http, d, fail_after_tokens=3)
    path, body = _request(True, True)
    async with http.post(router.url + path, json=body) as resp:
        events = _events(await resp.read())
    assert events[-2]["error"]["code"] == 502 and "not migrated: attempts" in events[-2]["error"]["message"]
    assert sum(len(d.engine.log) for d in decodes) == 3  # the first leg and two continuations
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text.count(" ") == 9  # 3 tokens per leg, each once
    assert _sample(router, "xpd_router_not_migrated_total", {"reason": "attempts"}) == 1


async def test_the_time_window_is_bounded(cluster, http):
    decodes = [await cluster.sim("both"), await cluster.sim("both")]
    router = await _aggregated(cluster, decodes, migration={"window_s": 0.2})
    for d in decodes:
        await _faults(http, d, fail_after_tokens=3, first_byte_delay_ms=1000, times=1)
    path, body = _request(False, True)
    async with http.post(router.url + path, json=body) as resp:
        events = _events(await resp.read())
    assert "not migrated: window" in events[-2]["error"]["message"]
    assert sum(len(d.engine.log) for d in decodes) == 2
    assert _sample(router, "xpd_router_not_migrated_total", {"reason": "window"}) == 1


def test_refusal_rules():
    assert migration.refusal({"prompt": "x", "temperature": 0, "seed": 3}, False) is None  # greedy: the seed changes nothing
    assert migration.refusal({"prompt": "x", "temperature": 0.7}, False) is None  # an unseeded sample stays one
    assert migration.refusal({"prompt": ["a", "b"]}, False) == "multiple_prompts"
    assert migration.refusal({"messages": [], "tools": [{"type": "function"}]}, True) == "tools"
    assert migration.refusal({"messages": [], "response_format": {"type": "json_object"}}, True) == "structured_output"
    assert migration.refusal({"prompt": "x", "stream_options": {"continuous_usage_stats": True}}, False) == "continuous_usage"


@pytest.mark.parametrize("details", [True, False], ids=["reasoning-parser", "no-parser"])
def test_a_continued_chat_keeps_the_usage_details_its_engines_give_a_chat(details):
    """vLLM adds ``completion_tokens_details`` to a chat's usage when it runs a reasoning parser (the vLLM
    tier's engines do); a continuation is a completions stream without them. Found on real engines
    (tests/vllm_tier/test_migration_killed_engine.py, 2026-12-02): a migrated chat equal in text to the
    uninterrupted run, its usage without them. The prefill leg's chat answer shows which the engines give."""
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    extra = {"completion_tokens_details": {"reasoning_tokens": 0}} if details else {}
    ledger = migration.StreamLedger(chat=True, keep_ids=False)
    ledger.note_prefill_answer({"choices": [{"index": 0, "message": {"content": "x"}}], "usage": {**usage, **extra},
                                "kv_transfer_params": {"do_remote_prefill": True}})
    first = {"id": "chatcmpl-1", "created": 1, "model": "m", "prompt_token_ids": [1, 2, 3, 4, 5],
             "choices": [{"index": 0, "delta": {"content": "a"}, "token_ids": [7]}]}
    ledger.feed(b"data: " + json.dumps(first).encode() + b"\n\n")
    ledger.new_leg()
    tail = {"id": "cmpl-2", "created": 2, "model": "m", "choices": [],
            "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}}
    out = ledger.feed(b"data: " + json.dumps(tail).encode() + b"\n\n")
    assert json.loads(out.removeprefix(b"data: "))["usage"] == {
        "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, **extra}


def test_a_chat_continuation_keeps_sampling_and_counts_down_the_budget():
    body = {"model": "m", "messages": CHAT, "max_completion_tokens": 10, "min_tokens": 4, "temperature": 0,
            "tools": None, "stream": True, "stream_options": {"include_usage": True}}
    leg = migration.continuation(body, True, [1, 2], [7, 8, 9])
    assert leg == {"model": "m", "prompt": [1, 2, 7, 8, 9], "max_tokens": 7, "min_tokens": 1, "temperature": 0,
                   "stream": True, "stream_options": {"include_usage": True}, "return_token_ids": True}


async def test_a_client_that_leaves_is_not_migrated(cluster, http, wait_until):
    decodes = [await cluster.sim("both", itl_ms=20), await cluster.sim("both", itl_ms=20)]
    router = await _aggregated(cluster, decodes)
    path, body = _request(False, True, max_tokens=1000)
    async with http.post(router.url + path, json=body) as resp:
        await _read_events(resp, 3)
        resp.close()
    await wait_until(lambda: all(r["outcome"] != "running" for d in decodes for r in d.engine.log))
    assert [r["outcome"] for d in decodes for r in d.engine.log] == ["aborted"]
    assert all(b.in_flight == 0 for b in router.router.registry)
    assert _sample(router, "xpd_router_migrations_total", {"kind": "stream"}) == 0
    assert _sample(router, "xpd_router_upstream_errors_total", {"pool": "decode", "kind": "broken"}) == 0


async def test_an_error_event_from_the_engine_is_migrated(cluster, http):
    """vLLM ends a stream with an error event when its engine core dies (then [DONE]); that leg is broken."""
    from aiohttp import web

    from xpdctl.aioserve import start_site

    dying_calls = []

    async def dying(request):
        dying_calls.append(1)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        prompt = (await request.json())["prompt"]
        await resp.write(b'data: {"id":"cmpl-x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,'
                         b'"text":"","prompt_token_ids":' + json.dumps(prompt if isinstance(prompt, list) else [1, 2]).encode()
                         + b',"token_ids":[],"finish_reason":null}]}\n\n')
        await resp.write(b'data: {"error":{"message":"EngineCore encountered an issue","code":500}}\n\ndata: [DONE]\n\n')
        return resp

    async def health(request):
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/completions", dying)
    app.router.add_get("/health", health)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        good = await cluster.sim("both")
        router = await _aggregated(cluster, [], backends=[{"url": f"http://127.0.0.1:{port}", "pool": "decode"},
                                                          {"url": good.url, "pool": "decode"}], health={"interval_s": 60})
        for _ in range(2):  # whichever decode is picked first, the answer ends well
            path, body = _request(False, True, max_tokens=5)
            async with http.post(router.url + path, json=body) as resp:
                events = _events(await resp.read())
            assert events[-1] == b"[DONE]" and not any("error" in e for e in events if isinstance(e, dict))
            assert "".join(e["choices"][0]["text"] for e in events if isinstance(e, dict) and e["choices"]).count(" ") == 5
        assert _sample(router, "xpd_router_migrations_total", {"kind": "stream"}) == len(dying_calls) >= 1
    finally:
        await runner.cleanup()
