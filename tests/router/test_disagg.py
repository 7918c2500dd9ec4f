"""Conditional disaggregation: off by default; short prompts and a saturated prefill pool skip prefill."""

import asyncio

SHORT = {"model": "m", "prompt": "hi there", "max_tokens": 3}
LONG = {"model": "m", "prompt": "word " * 400, "max_tokens": 3}


def _decisions(router, decision, reason):
    return router.router.metrics.registry.get_sample_value(
        "xpd_router_disagg_decisions_total", {"decision": decision, "reason": reason}) or 0


async def test_off_by_default_every_request_is_disaggregated(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    async with http.post(router.url + "/v1/completions", json=SHORT) as resp:
        assert resp.status == 200
    assert len(prefill.engine.log) == 1
    assert _decisions(router, "decode_only", "short_prompt") == 0


async def test_short_prompts_go_to_the_decode_whole(cluster, http):
    prefill, decode, both = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("both")
    router = await cluster.router([prefill], [decode], conditional_disagg={"enabled": True, "min_prompt_tokens": 50})
    async with http.post(router.url + "/v1/completions", json=SHORT) as resp:
        routed = (await resp.json())["choices"][0]["text"]
    async with http.post(both.url + "/v1/completions", json=SHORT) as resp:
        assert routed == (await resp.json())["choices"][0]["text"]
    assert not prefill.engine.log and "kv_transfer_params" not in decode.engine.log[0]["body"]
    async with http.post(router.url + "/v1/completions", json=LONG) as resp:
        assert resp.status == 200
    assert len(prefill.engine.log) == 1
    assert _decisions(router, "decode_only", "short_prompt") == 1
    assert _decisions(router, "disaggregated", "long_prompt") == 1


async def test_a_saturated_prefill_pool_is_bypassed(cluster, http, wait_until):
    prefill = await cluster.sim("prefill", ttft_ms=1500, max_num_seqs=1)
    decode = await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], conditional_disagg={
        "enabled": True, "min_prompt_tokens": 1, "prefill_saturation_waiting": 2})
    # Load the prefill directly (not through the router) until its own queue shows 2 waiting.
    backlog = [asyncio.create_task(http.post(prefill.url + "/v1/completions", json=SHORT)) for _ in range(3)]
    await wait_until(lambda: router.router.registry.get(prefill.url).load.waiting >= 2)
    async with http.post(router.url + "/v1/completions", json=LONG) as resp:
        assert resp.status == 200
    assert _decisions(router, "decode_only", "prefill_saturated") == 1
    assert len(prefill.engine.log) == 3  # only the direct backlog
    for task in backlog:
        task.cancel()
