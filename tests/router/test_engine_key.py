"""The engines' internal key: the router presents it on both legs and never passes the client's own
Authorization on. The simulator checks VLLM_API_KEY on /v1 paths only, as vLLM's --api-key does."""

import pytest


BODY = {"model": "m", "prompt": "hello there", "max_tokens": 3}


@pytest.fixture
def engine_key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "internal-key")  # read by the simulators at start
    monkeypatch.setenv("TEST_ENGINE_KEY", "internal-key")  # read by the router at start


async def test_engines_refuse_v1_without_the_internal_key_and_leave_health_open(cluster, http, engine_key):
    decode = await cluster.sim("decode")
    async with http.post(decode.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 401
    async with http.post(decode.url + "/v1/completions", json=BODY, headers={"Authorization": "Bearer internal-key"}) as resp:
        assert resp.status == 200
    for path in ("/health", "/metrics"):
        async with http.get(decode.url + path) as resp:
            assert resp.status == 200


async def test_router_presents_the_internal_key_not_the_clients(cluster, http, engine_key):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], engine_api_key_env="TEST_ENGINE_KEY")
    async with http.post(router.url + "/v1/completions", json=BODY, headers={"Authorization": "Bearer client-key"}) as resp:
        assert resp.status == 200


async def test_without_the_internal_key_the_clients_authorization_does_not_reach_the_engines(cluster, http, engine_key):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    # The client even sends the engines' key: it is not passed on, so the engines refuse the legs.
    async with http.post(router.url + "/v1/completions", json=BODY, headers={"Authorization": "Bearer internal-key"}) as resp:
        assert resp.status == 401
