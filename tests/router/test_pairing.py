"""Only compatible pairs carry traffic: equal generation labels, and not reported broken by a KV agent."""

BODY = {"model": "m", "prompt": "hello", "max_tokens": 2}


async def test_prefill_pairs_only_with_decodes_of_its_generation(cluster, http):
    old_p, new_p = await cluster.sim("prefill"), await cluster.sim("prefill")
    old_d, new_d = await cluster.sim("decode"), await cluster.sim("decode")
    backends = [
        {"url": old_p.url, "pool": "prefill", "generation": "g1"},
        {"url": new_p.url, "pool": "prefill", "generation": "g2"},
        {"url": old_d.url, "pool": "decode", "generation": "g1"},
        {"url": new_d.url, "pool": "decode", "generation": "g2"},
    ]
    router = await cluster.router(backends=backends)
    for _ in range(8):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    for prefill, decode in ((old_p, old_d), (new_p, new_d)):
        assert [r["request_id"] for r in prefill.engine.log] == [r["request_id"] for r in decode.engine.log]
    assert old_p.engine.log and new_p.engine.log


async def test_a_generation_without_a_decode_gets_no_prefill_traffic(cluster, http):
    lonely, paired = await cluster.sim("prefill"), await cluster.sim("prefill")
    decode = await cluster.sim("decode")
    backends = [
        {"url": lonely.url, "pool": "prefill", "generation": "next"},
        {"url": paired.url, "pool": "prefill", "generation": "now"},
        {"url": decode.url, "pool": "decode", "generation": "now"},
    ]
    router = await cluster.router(backends=backends)
    for _ in range(4):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not lonely.engine.log and len(paired.engine.log) == 4


async def test_pairs_a_kv_agent_reports_broken_are_not_used(cluster, http, wait_until, kv_agent):
    prefill = await cluster.sim("prefill")
    good, bad = await cluster.sim("decode"), await cluster.sim("decode")
    report = {"pairs": [
        {"prefill_url": prefill.url + "/", "decode_url": bad.url, "ok": False, "reason": "NIXL probe fell back to TCP"},
        {"prefill_url": prefill.url, "decode_url": good.url, "ok": True, "reason": ""},
    ]}
    router = await cluster.router([prefill], [good, bad], kv_agents=[await kv_agent(report)], kv_agent_poll_interval_s=0.05)
    await wait_until(lambda: router.router.registry.broken_pairs)
    for _ in range(4):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not bad.engine.log and len(good.engine.log) == 4

    report["pairs"][0]["ok"] = True  # the agent sees the pair healthy again
    await wait_until(lambda: not router.router.registry.broken_pairs)
    for _ in range(4):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert bad.engine.log


async def test_decodes_gone_during_the_prefill_leg_retry_on_another_prefill(cluster, http, wait_until):
    """A prefill whose only compatible decode is drained while it computes (a generation being retired
    mid-request) is not the client's problem: nothing was sent yet, so another prefill serves it."""
    import asyncio

    token = {"Authorization": "Bearer t0ken"}
    slow_old = await cluster.sim("prefill", ttft_ms=1000)
    old_d, new_p, new_d = await cluster.sim("decode"), await cluster.sim("prefill"), await cluster.sim("decode")
    backends = [
        {"url": slow_old.url, "pool": "prefill", "generation": "old"},
        {"url": old_d.url, "pool": "decode", "generation": "old"},
        {"url": new_d.url, "pool": "decode", "generation": "new"},
    ]
    router = await cluster.router(backends=backends, admin={"token": "t0ken"})
    request = asyncio.ensure_future(http.post(router.url + "/v1/completions", json=BODY))
    await wait_until(lambda: slow_old.engine.log)  # the prefill leg is under way on the old generation
    async with http.post(router.url + "/admin/backends", json={"url": new_p.url, "pool": "prefill", "generation": "new"},
                         headers=token) as resp:
        assert resp.status == 201
    async with http.post(router.url + "/admin/backends/drain", json={"url": old_d.url}, headers=token) as resp:
        assert resp.status == 200
    resp = await request
    assert resp.status == 200, await resp.text()
    resp.release()
    assert not old_d.engine.log and len(new_p.engine.log) == 1 and len(new_d.engine.log) == 1
