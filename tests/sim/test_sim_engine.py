"""The simulator engine: vLLM's response shapes, deterministic text, PD contract, metrics, validation."""

import asyncio
import json

import aiohttp
import pytest

PROMPT = "The quick brown fox jumps over the lazy dog"
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def _prefill_body(body: dict, chat: bool) -> dict:
    leg = {k: v for k, v in body.items() if k not in ("stream_options", "min_tokens")}
    leg.update(stream=False, max_tokens=1,
               kv_transfer_params={"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                                   "remote_block_ids": None, "remote_host": None, "remote_port": None})
    if chat:
        leg["max_completion_tokens"] = 1
    return leg


async def _text_of(resp: aiohttp.ClientResponse, chat: bool, stream: bool) -> tuple[str, dict | None]:
    if not stream:
        data = await resp.json()
        choice = data["choices"][0]
        return (choice["message"]["content"] if chat else choice["text"]), data["usage"]
    text, usage = "", None
    async for line in resp.content:
        line = line.strip()
        if not line or line == b"data: [DONE]":
            continue
        event = json.loads(line.removeprefix(b"data: "))
        if event.get("usage"):
            usage = event["usage"]
        for choice in event["choices"]:
            text += (choice["delta"].get("content") or "") if chat else choice["text"]
    return text, usage


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_pd_pair_gives_the_aggregated_text(sims, http, chat, stream):
    prefill, decode, both = await sims("prefill"), await sims("decode"), await sims("both")
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = {"model": "m", "max_tokens": 12, "stream": stream, "stream_options": {"include_usage": True}, "min_tokens": 3}
    body.update({"messages": CHAT} if chat else {"prompt": PROMPT})

    async with http.post(both.url + path, json=body) as resp:
        assert resp.status == 200
        expected, expected_usage = await _text_of(resp, chat, stream)

    async with http.post(prefill.url + path, json=_prefill_body(body, chat), headers={"X-Request-Id": "r1"}) as resp:
        assert resp.status == 200
        first = await resp.json()
    kv = first["kv_transfer_params"]
    assert kv["do_remote_prefill"] is True and kv["do_remote_decode"] is False
    assert kv["remote_engine_id"] == prefill.engine.engine_id and kv["remote_request_id"] == "r1"
    assert kv["remote_port"] == prefill.port and kv["remote_block_ids"] and kv["transfer_mode"] == "pull"
    assert first["usage"]["completion_tokens"] == 1

    async with http.post(decode.url + path, json={**body, "kv_transfer_params": kv}, headers={"X-Request-Id": "r1"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "r1"
        text, usage = await _text_of(resp, chat, stream)
    assert text == expected and len(text.split()) == 12
    assert usage == expected_usage and usage["completion_tokens"] == 12
    assert prefill.engine.leases.outstanding() == 0  # the decode pulled (and so freed) the KV


async def test_different_prompts_give_different_text(sims, http):
    both = await sims("both")
    texts = []
    for prompt in ("alpha beta", "gamma delta"):
        async with http.post(both.url + "/v1/completions", json={"model": "m", "prompt": prompt}) as resp:
            texts.append((await resp.json())["choices"][0]["text"])
    assert texts[0] != texts[1]


async def _prefill(http, prefill, prompt=PROMPT, request_id="r1") -> dict:
    body = _prefill_body({"model": "m", "prompt": prompt}, chat=False)
    async with http.post(prefill.url + "/v1/completions", json=body, headers={"X-Request-Id": request_id}) as resp:
        return (await resp.json())["kv_transfer_params"]


async def _decode(http, decode, kv, prompt=PROMPT) -> tuple[int, dict]:
    async with http.post(decode.url + "/v1/completions", json={"model": "m", "prompt": prompt, "kv_transfer_params": kv}) as resp:
        return resp.status, await resp.json()


async def test_decode_refuses_params_that_no_prefill_issued(sims, http):
    prefill, decode = await sims("prefill"), await sims("decode")
    kv = await _prefill(http, prefill)

    forged = {**kv, "remote_engine_id": "0000-not-an-engine"}
    status, body = await _decode(http, decode, forged)
    assert status == 400 and "not this prefill instance" in body["error"]["message"]

    status, body = await _decode(http, decode, kv, prompt="another prompt entirely")
    assert status == 400 and "different prompt" in body["error"]["message"]

    status, _ = await _decode(http, decode, kv)
    assert status == 200
    status, body = await _decode(http, decode, kv)  # replayed: the lease was used up by the pull
    assert status == 400 and "no live KV lease" in body["error"]["message"]

    status, body = await _decode(http, decode, {"do_remote_prefill": True})
    assert status == 400 and "remote_engine_id" in body["error"]["message"]


async def test_decode_with_unreachable_prefill_is_503(sims, http):
    prefill, decode = await sims("prefill"), await sims("decode")
    kv = await _prefill(http, prefill)
    await prefill.stop()
    status, body = await _decode(http, decode, kv)
    assert status == 503 and "side channel" in body["error"]["message"]


async def test_unpulled_kv_lease_expires(sims, http):
    prefill, decode = await sims("prefill", kv_lease_s=0.05), await sims("decode")
    kv = await _prefill(http, prefill)
    assert prefill.engine.leases.outstanding() == 1
    await asyncio.sleep(0.2)
    status, _ = await _decode(http, decode, kv)
    assert status == 400
    async with http.get(prefill.url + "/sim/state") as resp:
        state = await resp.json()
    assert state["kv_leases"] == 0 and state["kv_leases_expired"] == 1


async def test_roles_refuse_the_other_half_of_the_contract(sims, http):
    prefill, decode = await sims("prefill"), await sims("decode")
    status, body = await _decode(http, prefill, {"do_remote_prefill": True})
    assert status == 400 and "KV producer" in body["error"]["message"]
    async with http.post(decode.url + "/v1/completions", json=_prefill_body({"model": "m", "prompt": "x"}, False)) as resp:
        assert resp.status == 400


async def test_decode_serves_a_whole_request_without_params(sims, http):
    decode, both = await sims("decode"), await sims("both")
    results = []
    for sim in (decode, both):
        async with http.post(sim.url + "/v1/completions", json={"model": "m", "prompt": PROMPT, "max_tokens": 5}) as resp:
            assert resp.status == 200
            results.append((await resp.json())["choices"][0]["text"])
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "other", "prompt": "x"}', 404, "does not exist"),
        (b'{"model": "m"}', 400, "prompt"),
        (b'{"model": "m", "prompt": "x", "max_tokens": 100000}', 400, "maximum context length"),
    ],
)
async def test_invalid_requests_get_vllm_style_errors(sims, http, body, status, words):
    sim = await sims()
    async with http.post(sim.url + "/v1/completions", data=body) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
    assert words in error["message"] and error["code"] == status


async def test_metrics_carry_vllm_names_and_live_load(sims, http):
    sim = await sims(itl_ms=50, max_num_seqs=1)
    body = {"model": "m", "prompt": PROMPT, "max_tokens": 20}
    tasks = [asyncio.create_task(http.post(sim.url + "/v1/completions", json=body)) for _ in range(2)]
    for _ in range(200):
        if sim.engine.running == 1 and sim.engine.waiting == 1:
            break
        await asyncio.sleep(0.01)
    async with http.get(sim.url + "/metrics") as resp:
        text = await resp.text()
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 1.0' in text
    assert 'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0' in text
    assert "vllm:kv_cache_usage_perc{" in text
    for resp in await asyncio.gather(*tasks):
        resp.release()
    async with http.get(sim.url + "/metrics") as resp:
        text = await resp.text()
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0' in text
    assert 'vllm:generation_tokens_total{engine="0",model_name="m"} 40.0' in text
    assert "vllm:time_to_first_token_seconds_bucket" in text


async def test_models_and_health(sims, http):
    sim = await sims()
    async with http.get(sim.url + "/v1/models") as resp:
        assert (await resp.json())["data"][0]["id"] == "m"
    async with http.get(sim.url + "/health") as resp:
        assert resp.status == 200


async def test_side_channel_on_its_own_port(sims, http, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        side_port = s.getsockname()[1]
    # As a rendered unit sets it for vLLM; the simulator reads the same variables.
    monkeypatch.setenv("VLLM_NIXL_SIDE_CHANNEL_PORT", str(side_port))
    monkeypatch.setenv("VLLM_NIXL_SIDE_CHANNEL_HOST", "127.0.0.1")
    prefill = await sims("prefill")
    monkeypatch.delenv("VLLM_NIXL_SIDE_CHANNEL_PORT")
    decode = await sims("decode")
    kv = await _prefill(http, prefill)
    assert (kv["remote_host"], kv["remote_port"]) == ("127.0.0.1", side_port) != ("127.0.0.1", prefill.port)
    status, _ = await _decode(http, decode, kv)
    assert status == 200
