"""Client keys at the router: 401 without a valid key, 429 + Retry-After over a key's limits, per-key
metrics under the key id only, keys changed by a reload. Engines are simulators (`xpdctl sim`), which
report usage as vLLM does (prompt and completion tokens)."""

import asyncio
import hashlib

import pytest
import yaml

from xpdctl.router.reload import reload_file

KEY_A = "a" * 40
KEY_B = "b" * 40
BODY = {"model": "m", "prompt": "hello there", "max_tokens": 5}


def _key(key: str, id: str, **limits) -> dict:
    return {"id": id, "sha256": hashlib.sha256(key.encode()).hexdigest(), **limits}


def _auth(*keys) -> dict:
    return {"mode": "keys", "keys": list(keys)}


async def _pd(cluster, **config):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    return await cluster.router([prefill], [decode], **config)


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def test_no_key_or_a_wrong_key_gets_an_openai_401(cluster, http):
    router = await _pd(cluster, auth=_auth(_key(KEY_A, "team-a")))
    for headers in ({}, _bearer(KEY_B), {"Authorization": f"Basic {KEY_A}"}):
        async with http.post(router.url + "/v1/completions", json=BODY, headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            error = (await resp.json())["error"]
        assert error["type"] == "AuthenticationError" and error["code"] == 401 and error["message"]
    async with http.get(router.url + "/v1/models") as resp:
        assert resp.status == 401
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 200
        assert (await resp.json())["usage"]["completion_tokens"] == 5
    async with http.get(router.url + "/v1/models", headers=_bearer(KEY_A)) as resp:
        assert resp.status == 200
    async with http.get(router.url + "/health") as resp:  # health and metrics stay open to probes
        assert resp.status == 200


async def test_open_mode_serves_without_a_key(cluster, http):
    router = await _pd(cluster)
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200


async def test_requests_per_minute_answers_429_with_retry_after(cluster, http):
    router = await _pd(cluster, auth=_auth(_key(KEY_A, "team-a", requests_per_minute=2), _key(KEY_B, "team-b")))
    statuses = []
    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                retry_after = int(resp.headers["Retry-After"])
                error = (await resp.json())["error"]
    assert statuses == [200, 200, 429]
    assert 1 <= retry_after <= 30  # a minute holds 2 requests: one comes back every 30 s
    assert error["type"] == "RateLimitError" and "2 requests per minute" in error["message"]
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_B)) as resp:
        assert resp.status == 200  # another key's budget is its own


async def test_concurrent_requests_limit(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=50)
    router = await cluster.router([prefill], [decode], auth=_auth(_key(KEY_A, "team-a", max_concurrent=1)))
    slow = asyncio.ensure_future(http.post(router.url + "/v1/completions", json={**BODY, "max_tokens": 20},
                                           headers=_bearer(KEY_A)))
    gate = router.router.keys
    await wait_until(lambda: gate.states()[0].in_flight == 1)
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert "1 requests at once" in (await resp.json())["error"]["message"]
    first = await slow
    assert first.status == 200
    first.release()
    await wait_until(lambda: gate.states()[0].in_flight == 0)
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_tokens_per_minute_counts_the_engines_usage(cluster, http, stream):
    router = await _pd(cluster, auth=_auth(_key(KEY_A, "team-a", tokens_per_minute=10)))
    body = {**BODY, "max_tokens": 10, "stream": stream}
    async with http.post(router.url + "/v1/completions", json=body, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 200
        text = await resp.text()
    state = router.router.keys.states()[0]
    assert state.completion_tokens == 10 and state.prompt_tokens > 0  # from the engine's usage
    if stream:
        assert '"usage"' in text  # asked on the client's behalf: the usage event reaches the client too
    used = state.prompt_tokens + state.completion_tokens
    assert used > 10
    async with http.post(router.url + "/v1/completions", json=body, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 429
        # in debt by used - 10 tokens, refilled at 10 per minute (one every 6 s)
        assert int(resp.headers["Retry-After"]) == pytest.approx((used - 10) * 6, abs=1)
        assert "10 tokens per minute" in (await resp.json())["error"]["message"]


async def test_per_key_metrics_name_the_id_never_the_key(cluster, http):
    router = await _pd(cluster, auth=_auth(_key(KEY_A, "team-a", requests_per_minute=1)))
    for _ in range(2):
        async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
            await resp.read()
    async with http.get(router.url + "/metrics") as resp:
        text = await resp.text()
    assert 'xpd_router_key_requests_total{key_id="team-a",status="200"} 1.0' in text
    assert 'xpd_router_key_rejected_total{key_id="team-a",limit="requests_per_minute"} 1.0' in text
    assert 'xpd_router_key_tokens_total{key_id="team-a",kind="completion"} 5.0' in text
    assert 'xpd_router_key_in_flight{key_id="team-a"} 0.0' in text
    assert KEY_A not in text and hashlib.sha256(KEY_A.encode()).hexdigest() not in text


async def test_a_reload_changes_keys_and_keeps_a_kept_keys_budget(cluster, http, tmp_path):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    backends = [{"url": prefill.url, "pool": "prefill"}, {"url": decode.url, "pool": "decode"}]
    doc = {"model": "m", "backends": backends, "health": {"interval_s": 0.05, "timeout_s": 5.0},
           "auth": _auth(_key(KEY_A, "team-a", requests_per_minute=1))}
    router = await cluster.router(**doc)
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 200
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({**doc, "auth": _auth(_key(KEY_A, "team-a", requests_per_minute=1), _key(KEY_B, "team-b"))}))
    assert await reload_file(router, path)
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_B)) as resp:
        assert resp.status == 200
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 429  # its minute was spent before the reload
    path.write_text(yaml.safe_dump({**doc, "auth": _auth(_key(KEY_B, "team-b"))}))
    assert await reload_file(router, path)
    async with http.post(router.url + "/v1/completions", json=BODY, headers=_bearer(KEY_A)) as resp:
        assert resp.status == 401
    path.write_text(yaml.safe_dump({**doc, "auth": {"mode": "open"}}))
    assert await reload_file(router, path)
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200
