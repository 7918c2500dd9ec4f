"""Backend choice: least in-flight first, then the engines' scraped load; plus the load parser."""

import asyncio

from xpdctl.router import selection
from xpdctl.router.backends import Load, Registry
from xpdctl.router.config import Backend, Timeouts
from xpdctl.router.loadscrape import parse_load


def _registry(*pools_and_generations):
    registry = Registry(Timeouts())
    for i, (pool, generation) in enumerate(pools_and_generations):
        backend = registry.add(Backend(url=f"http://10.0.0.{i}:8000", pool=pool, generation=generation))
        backend.health = "healthy"
    return registry


async def test_least_in_flight_wins_then_waiting_then_running_then_kv():
    registry = _registry(("prefill", "g"), ("decode", "g"), ("decode", "g"), ("decode", "g"))
    a, b, c = registry.decodes
    a.in_flight, b.in_flight, c.in_flight = 2, 1, 1
    b.load, c.load = Load(waiting=3), Load(waiting=1, running=9)
    assert selection.pick_decode(registry, registry.prefills[0]) is c
    b.load = Load(waiting=1, running=2)
    assert selection.pick_decode(registry, registry.prefills[0]) is b
    c.load = Load(waiting=1, running=2, kv_usage=0.1)
    assert selection.pick_decode(registry, registry.prefills[0]) is b
    b.in_flight = 5
    assert selection.pick_decode(registry, None) is c
    for backend in registry:
        await backend.session.close()


async def test_exact_ties_take_turns():
    registry = _registry(("prefill", "g"), ("prefill", "g"), ("decode", "g"))
    picks = {selection.pick_prefill(registry, set()).url for _ in range(4)}
    assert len(picks) == 2
    for backend in registry:
        await backend.session.close()


async def test_unusable_and_incompatible_backends_are_skipped():
    registry = _registry(("prefill", "g1"), ("prefill", "g2"), ("decode", "g1"), ("decode", "g1"))
    p1, p2 = registry.prefills
    d1, d2 = registry.decodes
    assert selection.pick_prefill(registry, set()) is p1  # p2 has no decode of its generation
    assert selection.pick_prefill(registry, {p1.url}) is None
    d1.draining = True
    assert selection.pick_decode(registry, p1) is d2
    d2.health = "unhealthy"
    assert selection.pick_decode(registry, p1) is None and selection.pick_prefill(registry, set()) is None
    d1.draining, d2.health = False, "healthy"
    registry.broken_pairs = {(p1.url, d1.url)}
    assert selection.pick_decode(registry, p1) is d2 and selection.usable_pairs(registry) == 1
    for backend in registry:
        await backend.session.close()


def test_parse_load_reads_vllm_metric_names():
    text = """# HELP vllm:num_requests_waiting Requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
vllm:num_requests_waiting_by_reason{reason="capacity"} 100.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 1234.0
"""
    assert parse_load(text) == Load(waiting=5.0, running=7.0, kv_usage=0.5)


async def test_router_scrapes_the_engines_load(cluster, http, wait_until):
    prefill = await cluster.sim("prefill")
    loaded, idle = await cluster.sim("decode", itl_ms=200, max_num_seqs=1), await cluster.sim("decode")
    router = await cluster.router([prefill], [loaded, idle])
    body = {"model": "m", "prompt": "x", "max_tokens": 20}
    # Two requests straight to the engine: one runs, one waits; the router never saw them.
    direct = [asyncio.ensure_future(http.post(loaded.url + "/v1/completions", json=body)) for _ in range(2)]
    scraped = router.router.registry.get(loaded.url)
    await wait_until(lambda: (scraped.load.waiting, scraped.load.running) == (1.0, 1.0) and scraped.load.kv_usage > 0)
    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json={**body, "max_tokens": 2}) as resp:
            assert resp.status == 200
    assert len(idle.engine.log) == 3 and len(loaded.engine.log) == 2
    for task in direct:
        task.cancel()
