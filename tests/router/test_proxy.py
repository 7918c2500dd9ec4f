"""The PD request contract through the router, against simulator engines (REFERENCE section 1)."""

import json
import re

import pytest

PROMPT = "Explain prefill and decode disaggregation in two sentences"
CHAT = [{"role": "user", "content": "hello, who are you?"}]


def _request(chat: bool, stream: bool) -> tuple[str, dict]:
    body = {"model": "m", "max_tokens": 9, "stream": stream, "min_tokens": 2, "temperature": 0}
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update({"messages": CHAT} if chat else {"prompt": PROMPT})
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


def _unstamp(raw: bytes) -> bytes:
    return re.sub(rb'"created":\s*\d+', b'"created":0', raw)


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_router_speaks_the_pd_contract(cluster, http, chat, stream):
    prefill, decode, both = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("both")
    router = await cluster.router([prefill], [decode])
    path, body = _request(chat, stream)

    async with http.post(both.url + path, json=body, headers={"X-Request-Id": "same"}) as resp:
        aggregated = await resp.read()
    async with http.post(router.url + path, json=body, headers={"X-Request-Id": "same"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "same"
        assert resp.headers["Content-Type"].startswith("text/event-stream" if stream else "application/json")
        routed = await resp.read()

    # Byte for byte what an aggregated instance answers (text, usage, id), but the timestamps;
    # whole answers differ only in kv_transfer_params, which vLLM's decode reports as null too.
    assert _unstamp(routed) == _unstamp(aggregated)

    (prefill_leg,) = list(prefill.engine.log)
    (decode_leg,) = list(decode.engine.log)
    assert prefill_leg["request_id"] == decode_leg["request_id"] == "same"
    sent = prefill_leg["body"]
    assert sent["stream"] is False and sent["max_tokens"] == 1
    assert "stream_options" not in sent and "min_tokens" not in sent
    assert sent["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                                          "remote_block_ids": None, "remote_host": None, "remote_port": None}
    assert ("max_completion_tokens" in sent) == chat and sent.get("max_completion_tokens", 1) == 1
    kv = decode_leg["body"].pop("kv_transfer_params")
    assert kv["remote_engine_id"] == prefill.engine.engine_id and kv["remote_request_id"] == "same"
    # The client's own request, untouched but for the token ids a stream is migrated with (docs/router.md)
    assert decode_leg["body"] == ({**body, "return_token_ids": True} if stream else body)
    assert prefill.engine.leases.outstanding() == 0  # the decode pulled the KV


async def test_request_id_is_generated_when_the_client_sends_none(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    async with http.post(router.url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as resp:
        assert resp.status == 200
        given = resp.headers["X-Request-Id"]
    assert len(given) >= 16
    assert [r["request_id"] for r in prefill.engine.log] == [r["request_id"] for r in decode.engine.log] == [given]


async def test_sse_bytes_pass_through_unchanged(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    path, body = _request(chat=False, stream=True)
    async with http.post(router.url + path, json=body) as resp:
        events = [line for line in (await resp.read()).split(b"\n\n") if line]
    assert events[-1] == b"data: [DONE]"
    parsed = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert [c["choices"][0]["text"] for c in parsed[:-1]] and parsed[-1]["usage"]["completion_tokens"] == 9
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("path", "raw", "words"),
    [
        ("/v1/completions", b"{not json", "not valid JSON"),
        ("/v1/completions", b"[1, 2]", "JSON object"),
        ("/v1/completions", b'{"prompt": "hi"}', "'model' is required"),
        ("/v1/completions", b'{"model": "m"}', "'prompt' is required"),
        ("/v1/chat/completions", b'{"model": "m", "prompt": "hi"}', "'messages' is required"),
    ],
)
async def test_malformed_requests_are_400_without_touching_engines(cluster, http, path, raw, words):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    async with http.post(router.url + path, data=raw) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert words in error["message"] and error["code"] == 400 and error["type"] == "BadRequestError"
    assert not prefill.engine.log and not decode.engine.log


async def test_engine_refusals_pass_through_and_are_not_retried(cluster, http):
    prefills = [await cluster.sim("prefill"), await cluster.sim("prefill")]
    decode = await cluster.sim("decode")
    router = await cluster.router(prefills, [decode])
    # The prefill refuses an unknown model: its answer is the client's, the decode is never asked.
    async with http.post(router.url + "/v1/completions", json={"model": "nope", "prompt": "hi"}) as resp:
        assert resp.status == 404
        assert "does not exist" in (await resp.json())["error"]["message"]
    assert sum(len(p.engine.log) for p in prefills) == 1 and not decode.engine.log
    # The prefill leg asks for one token, so only the decode sees the oversized request.
    async with http.post(router.url + "/v1/completions", json={"model": "m", "prompt": "hi", "max_tokens": 10**6}) as resp:
        assert resp.status == 400
        assert "maximum context length" in (await resp.json())["error"]["message"]
    assert [r["status"] for r in decode.engine.log] == [400]
    assert all(b.health == "healthy" and b.fails == 0 for b in router.router.registry)


async def test_models_lists_the_configured_model_or_asks_a_decode(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", model="served-name")
    named = await cluster.router([prefill], [decode], model="public-name")
    asking = await cluster.router([prefill], [decode], model="")
    async with http.get(named.url + "/v1/models") as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == ["public-name"]
    async with http.get(asking.url + "/v1/models") as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == ["served-name"]


async def test_health_reports_whether_a_pair_is_usable(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], health={"interval_s": 0.05, "unhealthy_threshold": 1})
    async with http.get(router.url + "/health") as resp:
        assert resp.status == 200 and (await resp.json())["usable_pairs"] == 1
    await decode.stop()
    await wait_until(lambda: router.router.registry.decodes[0].health == "unhealthy")
    async with http.get(router.url + "/health") as resp:
        assert resp.status == 503
