"""The admin API: bearer auth, listing, drain/undrain with in-flight reaching 0, add and remove."""

import asyncio

import pytest

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"model": "m", "prompt": "hello", "max_tokens": 3}


async def test_admin_is_off_without_a_token(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    async with http.get(router.url + "/admin/backends", headers=AUTH) as resp:
        assert resp.status == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_every_admin_call_needs_the_bearer_token(cluster, http, header):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], admin={"token": TOKEN})
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/admin/backends"), ("POST", "/admin/backends/drain"), ("POST", "/admin/backends/undrain"),
                         ("POST", "/admin/backends"), ("DELETE", "/admin/backends")]:
        async with http.request(method, router.url + path, json={"url": decode.url}, headers=headers) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
    assert not router.router.registry.get(decode.url).draining


async def test_token_file_enables_admin(cluster, http, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], admin={"token_file": str(token_file)})
    async with http.get(router.url + "/admin/backends", headers=AUTH) as resp:
        assert resp.status == 200
        listed = {b["url"]: b for b in (await resp.json())["backends"]}
    assert listed[decode.url]["pool"] == "decode" and listed[decode.url]["state"] == "healthy"
    assert listed[prefill.url]["in_flight"] == 0


async def test_drain_returns_at_once_and_in_flight_reaches_zero(cluster, http):
    prefill = await cluster.sim("prefill")
    busy, spare = await cluster.sim("decode", itl_ms=20), await cluster.sim("decode")
    router = await cluster.router([prefill], [busy], admin={"token": TOKEN})
    stream = await http.post(router.url + "/v1/completions", json={**BODY, "max_tokens": 25, "stream": True})
    await stream.content.readline()  # the decode leg is under way on `busy`

    async with http.post(router.url + "/admin/backends", json={"url": spare.url, "pool": "decode"}, headers=AUTH) as resp:
        assert resp.status == 201 and (await resp.json())["state"] == "healthy"
    async with http.post(router.url + "/admin/backends/drain", json={"url": busy.url}, headers=AUTH) as resp:
        assert resp.status == 200
        drained = await resp.json()
    assert drained["state"] == "draining" and drained["in_flight"] == 1

    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200
    assert len(busy.engine.log) == 1 and len(spare.engine.log) == 1  # no new request on the drained one

    seen = []
    for _ in range(500):
        async with http.get(router.url + "/admin/backends", headers=AUTH) as resp:
            state = {b["url"]: b for b in (await resp.json())["backends"]}[busy.url]
        seen.append(state["in_flight"])
        if state["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    assert seen[0] == 1 and seen[-1] == 0
    assert (await stream.read()).endswith(b"data: [DONE]\n\n")  # the in-flight stream finished whole
    stream.release()

    async with http.post(router.url + "/admin/backends/undrain", json={"url": busy.url}, headers=AUTH) as resp:
        assert (await resp.json())["state"] == "healthy"


async def test_add_and_remove_backends(cluster, http, wait_until):
    prefill, first = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [first], admin={"token": TOKEN})
    second = await cluster.sim("decode")

    async with http.post(router.url + "/admin/backends", json={"url": second.url, "pool": "decode"}, headers=AUTH) as resp:
        assert resp.status == 201
    async with http.post(router.url + "/admin/backends", json={"url": second.url + "/", "pool": "decode"}, headers=AUTH) as resp:
        assert resp.status == 409
    async with http.post(router.url + "/admin/backends", json={"url": second.url, "pool": "middle"}, headers=AUTH) as resp:
        assert resp.status == 400
    async with http.request("DELETE", router.url + "/admin/backends", json={"url": first.url}, headers=AUTH) as resp:
        assert resp.status == 200
    async with http.request("DELETE", router.url + "/admin/backends", json={"url": first.url}, headers=AUTH) as resp:
        assert resp.status == 404
    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not first.engine.log and len(second.engine.log) == 3
    async with http.get(router.url + "/admin/backends", headers=AUTH) as resp:
        assert sorted(b["url"] for b in (await resp.json())["backends"]) == sorted([prefill.url, second.url])
