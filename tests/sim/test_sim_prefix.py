"""The simulator's prefix cache and KV events: vLLM's wire format and block hashes, what a cached
prefix saves, and the router's prefix index over many simulated engines (the scale test)."""

import asyncio
import random
import re

import pytest
import zmq
import zmq.asyncio

from tests.tokenizer_dir import ids, write_tokenizer
from xpdctl.router import kvwire
from xpdctl.router.blockhash import block_hashes, event_key
from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router

BLOCK = 4


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _prefix_sim(sims, tokenizer_dir, role="prefill", **overrides):
    return sims(role, prefix_caching=True, tokenizer=str(tokenizer_dir), kv_events_port=0, block_size=BLOCK, **overrides)


async def _subscribe(endpoint):
    sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    await asyncio.sleep(0.3)  # ZMQ drops what is published before the subscription is up
    return sub


async def _complete(http, sim, prompt, **extra):
    body = {"model": "m", "prompt": prompt, "max_tokens": 2, **extra}
    async with http.post(sim.url + "/v1/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _counter(text, series):
    """The sum of the samples whose name (and labels) start with ``series``."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(series)}[^\n]* ([0-9.e+]+)$", text, re.M))


async def _scrape(http, url):
    async with http.get(url + "/metrics") as resp:
        return await resp.text()


async def test_blocks_are_announced_as_vllm_does_and_a_cached_prefix_is_not_computed(sims, tokenizer_dir, http):
    sim = await _prefix_sim(sims, tokenizer_dir, prefill_ms_per_token=2.0, serial_prefill=True, num_gpu_blocks=6)
    sub = await _subscribe(sim.kv_events)
    prompt = " ".join(f"w{i}" for i in range(18))  # 4 full blocks
    await _complete(http, sim, prompt)
    seq, batch = kvwire.decode(await asyncio.wait_for(sub.recv_multipart(), 5))
    assert seq == 0
    (event,) = batch.events
    assert event.block_hashes == [event_key(h) for h in block_hashes(ids(prompt), BLOCK)]  # as vLLM's default
    assert event.parent_block_hash is None
    assert event.token_ids == ids(prompt)[:16] and event.block_size == BLOCK

    longer = prompt + " w100 w101 w102 w103 w104"  # shares 4 blocks, adds one
    await _complete(http, sim, longer)
    seq, batch = kvwire.decode(await asyncio.wait_for(sub.recv_multipart(), 5))
    assert seq == 1
    assert [type(e).__name__ for e in batch.events] == ["BlockStored"]
    assert batch.events[0].parent_block_hash == event_key(block_hashes(ids(prompt), BLOCK)[-1])
    text = await _scrape(http, sim.url)
    assert _counter(text, "vllm:prefix_cache_queries_total") == 18 + 23
    assert _counter(text, "vllm:prefix_cache_hits_total") == 16

    await _complete(http, sim, " ".join(f"w{500 + i}" for i in range(13)))  # 3 blocks: 8 > capacity 6, 2 evicted
    _, batch = kvwire.decode(await asyncio.wait_for(sub.recv_multipart(), 5))
    removed = [e.block_hashes[0] for e in batch.events if isinstance(e, kvwire.BlockRemoved)]
    assert removed == [event_key(h) for h in block_hashes(ids(prompt), BLOCK)[:2]]  # least recently used first
    sub.close(linger=0)


async def test_event_faults_garbage_and_silence(sims, tokenizer_dir, http):
    sim = await _prefix_sim(sims, tokenizer_dir)
    sub = await _subscribe(sim.kv_events)
    async with http.post(sim.url + "/sim/faults", json={"kv_events": "garbage"}) as resp:
        assert resp.status == 200
    await _complete(http, sim, "w1 w2 w3 w4 w5")
    with pytest.raises(kvwire.BadMessage):
        kvwire.decode(await asyncio.wait_for(sub.recv_multipart(), 5))
    async with http.post(sim.url + "/sim/faults", json={"kv_events": "silent"}) as resp:
        assert resp.status == 200
    await _complete(http, sim, "w6 w7 w8 w9 w10")
    async with http.delete(sim.url + "/sim/faults"):
        pass
    await _complete(http, sim, "w11 w12 w13 w14 w15")
    seq, _ = kvwire.decode(await asyncio.wait_for(sub.recv_multipart(), 5))
    assert seq == 2  # batch 1 was never sent: the subscriber sees the gap
    sub.close(linger=0)


def _conversations(count: int, turns: int, seed: int) -> list[list[str]]:
    """Multi-turn chats as completions: each turn's prompt is the whole conversation so far."""
    rng = random.Random(seed)
    chats = []
    for c in range(count):
        history = f"w{1500 + c}"  # each conversation starts apart from the others
        prompts = []
        for _ in range(turns):
            history += " " + " ".join(f"w{rng.randrange(1400)}" for _ in range(rng.randrange(6, 14)))
            prompts.append(history)
            history += " answer " + " ".join(f"w{rng.randrange(1400)}" for _ in range(4))
        chats.append(prompts)
    return chats


async def test_at_scale_the_router_expects_exactly_the_hits_the_engines_report(sims, tokenizer_dir, http):
    """8 prefills and 2 decodes with prefix caching, 24 conversations of 5 turns sent 8 at a time: the
    router's index predicts each prefill's prefix-cache hits token for token, and nearly all of each
    conversation's history is reused (least in flight would spread the turns over 8 engines)."""
    prefills = [await _prefix_sim(sims, tokenizer_dir, num_gpu_blocks=400) for _ in range(8)]
    decodes = [await sims("decode") for _ in range(2)]
    backends = [{"url": s.url, "pool": "prefill", "kv_events": s.kv_events, "block_size": BLOCK} for s in prefills]
    backends += [{"url": s.url, "pool": "decode"} for s in decodes]
    config = RouterConfig.model_validate({"model": "m", "backends": backends, "health": {"interval_s": 0.05},
                                          "prefix_routing": {"tokenizer": str(tokenizer_dir)}})
    router = await start_router(config, port=0)
    try:
        for _ in range(600):
            if all(b.health == "healthy" for b in router.router.registry) and all(
                    router.router.registry.get(s.url).kv_index is not None for s in prefills):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the subscriptions are up
        chats = _conversations(24, 5, seed=7)
        gate = asyncio.Semaphore(8)

        async def chat(prompts):
            async with gate:
                for prompt in prompts:
                    await _complete(http, router, prompt)
                    await asyncio.sleep(0.02)  # the engine's events reach the router before the next turn

        await asyncio.gather(*(chat(c) for c in chats))
        text = await _scrape(http, router.url)
        expected = _counter(text, 'xpd_router_prefix_cached_tokens_total{pool="prefill"')
        prompt_tokens = _counter(text, 'xpd_router_prefix_prompt_tokens_total{pool="prefill"')
        hits = queries = 0.0
        for sim in prefills:
            engine = await _scrape(http, sim.url)
            hits += _counter(engine, "vllm:prefix_cache_hits_total")
            queries += _counter(engine, "vllm:prefix_cache_queries_total")
        assert queries == prompt_tokens
        assert hits == expected
        # Every turn on its conversation's first engine would reuse the previous turn's full blocks.
        ideal = sum(len(ids(p)) // BLOCK * BLOCK for c in chats for p in c[:-1])
        assert hits >= 0.8 * ideal, (hits, ideal)
    finally:
        await router.stop()
