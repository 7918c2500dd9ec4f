"""Prefix-aware routing end to end in one process: simulator engines, a router with a real tokenizer,
and real ZMQ publishers the test drives (so it can also send what a broken engine would)."""

import logging

import pytest
import zmq

from tests.tokenizer_dir import ids, write_tokenizer
from xpdctl.router import kvwire
from xpdctl.router.blockhash import block_hashes

BLOCK = 4
PROMPT = " ".join(f"w{i}" for i in range(40))  # 40 tokens: 9 blocks can hit (never the last token)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


class Publisher:
    """An engine's KV event publisher, as vLLM's ZmqEventPublisher sends (kv_events.py)."""

    def __init__(self):
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq = 0

    def send(self, *events, seq=None):
        self.seq = self.seq if seq is None else seq
        self.sock.send_multipart(kvwire.encode(self.seq, kvwire.KVEventBatch(ts=0.0, events=list(events))))
        self.seq += 1

    def close(self):
        self.sock.close(linger=0)


def stored(text):
    hashes = block_hashes(ids(text), BLOCK)
    return kvwire.BlockStored(block_hashes=hashes, parent_block_hash=None, token_ids=ids(text)[:len(hashes) * BLOCK],
                              block_size=BLOCK, lora_id=None, medium="CPU", lora_name=None)


@pytest.fixture
async def prefix_cluster(cluster, tokenizer_dir, wait_until):
    """Two prefills with publishers, one decode; the router's indexes subscribed and working."""
    publishers = [Publisher(), Publisher()]
    prefills = [await cluster.sim("prefill"), await cluster.sim("prefill")]
    decode = await cluster.sim("decode")
    backends = [{"url": s.url, "pool": "prefill", "kv_events": p.endpoint, "block_size": BLOCK}
                for s, p in zip(prefills, publishers)] + [{"url": decode.url, "pool": "decode"}]
    router = await cluster.router(backends=backends, prefix_routing={"tokenizer": str(tokenizer_dir), "silence_s": 0.5})

    def indexes():
        return [router.router.registry.get(s.url).kv_index for s in prefills]

    await wait_until(lambda: all(i is not None for i in indexes()), timeout_s=60)
    # ZMQ drops what a publisher sends before the subscriber's connection is up: send until it lands.
    for publisher, index in zip(publishers, indexes()):
        async def landed(publisher=publisher, index=index):
            publisher.send()
            return index.state == "ok"
        for _ in range(200):
            if await landed():
                break
            await __import__("asyncio").sleep(0.02)
        assert index.state == "ok"
    yield router, prefills, publishers, indexes
    for p in publishers:
        p.close()


async def _complete(http, router, prompt=PROMPT):
    async with http.post(router.url + "/v1/completions", json={"model": "m", "prompt": prompt, "max_tokens": 2}) as resp:
        assert resp.status == 200, await resp.text()


def _served(sim):
    return sum(1 for r in sim.engine.log if r["body"].get("prompt"))


async def _metrics(http, router):
    async with http.get(router.url + "/metrics") as resp:
        return await resp.text()


async def test_the_prefill_holding_the_prompts_blocks_gets_it(prefix_cluster, http, wait_until):
    router, prefills, publishers, indexes = prefix_cluster
    publishers[1].send(stored(PROMPT))
    await wait_until(lambda: len(indexes()[1]) == 10)
    for _ in range(4):  # least in flight alone would alternate
        await _complete(http, router)
    assert (_served(prefills[0]), _served(prefills[1])) == (0, 4)
    assert [b.queued_tokens for b in router.router.registry] == [0] * len(list(router.router.registry))  # legs ended
    text = await _metrics(http, router)
    assert 'xpd_router_prefix_picks_total{outcome="cached_prefix",pool="prefill"} 4.0' in text
    assert 'xpd_router_prefix_cached_tokens_total{pool="prefill"} 144.0' in text  # 4 x 9 blocks of 4
    # Evicted from that engine: back to load alone.
    publishers[1].send(kvwire.BlockRemoved(block_hashes=stored(PROMPT).block_hashes[:1], medium="CPU"))
    await wait_until(lambda: len(indexes()[1]) == 9)
    for _ in range(4):
        await _complete(http, router)
    assert _served(prefills[0]) >= 1  # shared by load (the scraped engine load decides ties)
    assert 'xpd_router_prefix_picks_total{outcome="no_cached_prefix",pool="prefill"} 4.0' in await _metrics(http, router)


async def test_a_cached_prefix_does_not_outweigh_a_queue(prefix_cluster, http, wait_until):
    router, prefills, publishers, indexes = prefix_cluster
    publishers[1].send(stored(PROMPT))
    await wait_until(lambda: len(indexes()[1]) == 10)
    cached = router.router.registry.get(prefills[1].url)
    # 36 of the prompt's 40 tokens are cached there: a queue of 20 uncached tokens ahead is less work
    # than the 36 it saves, a queue of 80 (two whole prompts) is more.
    cached.queued_tokens = 20
    await _complete(http, router)
    assert (_served(prefills[0]), _served(prefills[1])) == (0, 1)
    cached.queued_tokens = 80
    await _complete(http, router)
    assert (_served(prefills[0]), _served(prefills[1])) == (1, 1)
    cached.queued_tokens = 0


async def test_garbage_gaps_restarts_and_silence_drop_the_index_and_serving_goes_on(prefix_cluster, http, wait_until,
                                                                                   caplog):
    router, prefills, publishers, indexes = prefix_cluster
    caplog.set_level(logging.WARNING, logger="xpdctl.router")
    pub, index = publishers[1], indexes()[1]
    pub.send(stored(PROMPT))
    await wait_until(lambda: len(index) == 10)
    pub.sock.send_multipart([b"", b"\x00" * 8, b"\xc1 not msgpack"])
    await wait_until(lambda: len(index) == 0)
    await _complete(http, router)  # served, by load
    pub.send(stored(PROMPT))
    await wait_until(lambda: len(index) == 10 and index.state == "ok")
    pub.send(seq=pub.seq + 3)  # three batches lost
    await wait_until(lambda: len(index) == 0)
    pub.send(stored(PROMPT))
    await wait_until(lambda: len(index) == 10)
    pub.send(seq=0)  # the engine restarted at the same address
    await wait_until(lambda: len(index) == 0)
    pub.send(stored(PROMPT))
    await wait_until(lambda: len(index) == 10)
    await _complete(http, router)  # routed to it; it never announces the blocks it computed
    await wait_until(lambda: len(index) == 0, timeout_s=5)  # silent past silence_s: dropped
    text = await _metrics(http, router)
    url = prefills[1].url
    for reason in ("bad_message", "gap", "restart", "silent"):
        assert f'xpd_router_kv_index_resets_total{{reason="{reason}",url="{url}"}} 1.0' in text
    assert "payload is not a KV event batch" in caplog.text and "routing it by load" in caplog.text


async def test_a_tokenizer_that_cannot_load_leaves_routing_by_load(cluster, http, tmp_path, wait_until, caplog):
    caplog.set_level(logging.WARNING, logger="xpdctl.router")
    (tmp_path / "config.json").write_text("{}")
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], prefix_routing={"tokenizer": str(tmp_path)})
    await wait_until(lambda: router.router.proxy.prefix.tokens.state == "failed", timeout_s=30)
    await _complete(http, router)
    assert 'xpd_router_prefix_routing{state="load_only"} 1.0' in await _metrics(http, router)
    assert "no tokenizer.json or tokenizer_config.json" in caplog.text



async def test_a_reload_turns_prefix_routing_off_and_on(prefix_cluster, wait_until):
    router, prefills, publishers, indexes = prefix_cluster
    app = router.router
    on = app.config
    await app.apply(on.model_copy(update={"prefix_routing": type(on.prefix_routing)()}), None)
    assert app.proxy.prefix is None and indexes() == [None, None]
    await app.apply(on, None)
    await wait_until(lambda: all(i is not None for i in indexes()), timeout_s=60)
    assert app.proxy.prefix.tokens.state == "ready"
