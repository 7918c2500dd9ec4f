"""The prefix index: vLLM's block hash, what an engine's events say it holds, and when not to trust it."""

import json

import pytest

from xpdctl.models.tiny_gpt_oss import LAYER_TYPES, SLIDING_WINDOW
from xpdctl.router.blockhash import NONE_HASH, block_hashes, event_key
from xpdctl.router.kvindex import FULL, Group, InstanceIndex
from xpdctl.router.kvlayout import LayoutError, groups_of
from xpdctl.router.kvwire import AllBlocksCleared, BlockRemoved, BlockStored, KVEventBatch


def test_block_hashes_equal_vllms():
    """Computed with vLLM 0.32's own functions on 2026-12-02: init_none_hash(sha256_cbor), then
    hash_block_tokens(sha256_cbor, parent, range(16)) and range(16, 32) (vllm/v1/core/kv_cache_utils.py).
    The vLLM tier checks the same against a live engine's BlockStored events."""
    assert NONE_HASH.hex() == "9bd96a485ad84efdafb72ee48a1d7a69bcead0f8f0433173941b276b9581eef0"
    hashes = block_hashes(list(range(40)), 16)  # 8 tokens short of a third block: not hashed
    assert [h.hex() for h in hashes] == [
        "dc918a88b139e5afe60b88eda27508d4aee16c10fdc354791efea06206ac0749",
        "c300ec275d7bf08af8fc63e76cdc0086911bbc7091e03c5cf892553bef84ef0c",
    ]


def _stored(hashes, group=0, block_size=16, parent=None):
    return BlockStored(block_hashes=list(hashes), parent_block_hash=parent, token_ids=[0] * (block_size * len(hashes)),
                       block_size=block_size, lora_id=None, medium="GPU", lora_name=None, group_idx=group)


def _removed(hashes, group=0):
    return BlockRemoved(block_hashes=list(hashes), medium="GPU", group_idx=group)


def _batch(*events):
    return KVEventBatch(ts=0.0, events=list(events))


PROMPT = block_hashes(list(range(6 * 16)), 16)  # six blocks
KEYS = [event_key(h) for h in PROMPT]  # what the router looks up


def test_stored_blocks_count_as_a_prefix_until_one_is_removed():
    index = InstanceIndex(16)
    assert index.cached_blocks(KEYS) == 0 and index.state == "empty"
    assert index.apply(0, _batch(_stored(PROMPT))) is None
    assert index.cached_blocks(KEYS) == 6
    assert index.cached_blocks([event_key(h) for h in block_hashes(list(range(3 * 16)) + [7] * 48, 16)]) == 3
    index.apply(1, _batch(_removed(PROMPT[2:3])))
    assert index.cached_blocks(KEYS) == 2  # blocks 3.. are unreachable without block 2
    index.apply(2, _batch(AllBlocksCleared()))
    assert index.cached_blocks(KEYS) == 0


def test_a_sequence_gap_or_restart_drops_everything_known():
    index = InstanceIndex(16)
    index.apply(5, _batch(_stored(PROMPT)))
    why = index.apply(7, _batch(_stored(PROMPT[:1])))  # batch 6 lost: a BlockRemoved may be in it
    assert "1 event batch(es) lost" in why
    assert index.cached_blocks(KEYS) == 1  # rebuilt from what came after the gap only
    why = index.apply(0, _batch())  # the engine started again: its cache is empty
    assert "restarted" in why and index.cached_blocks(KEYS) == 0 and index.state == "ok"


def test_events_the_layout_does_not_explain_make_the_instance_load_only_until_it_restarts():
    index = InstanceIndex(16)
    why = index.apply(0, _batch(_stored(PROMPT, group=1)))
    assert "group 1" in why and index.state == "mismatch"
    index.apply(1, _batch(_stored(PROMPT)))
    assert index.cached_blocks(KEYS) == 0  # still load-only
    index.apply(0, _batch(_stored(PROMPT)))  # restarted
    assert index.state == "ok" and index.cached_blocks(KEYS) == 6
    assert "block size 32" in InstanceIndex(16).apply(0, _batch(_stored(PROMPT, block_size=32)))


def test_integer_block_hashes_as_vllm_publishes_them_by_default_are_the_same_blocks():
    index = InstanceIndex(16)
    index.apply(0, _batch(_stored(KEYS[:3]), _stored(PROMPT[3:])))  # ints (vLLM's default), then whole hashes
    assert index.cached_blocks(KEYS) == 6
    assert KEYS[0] == int.from_bytes(PROMPT[0], "big") & (1 << 64) - 1  # vLLM's maybe_convert_block_hash


@pytest.fixture
def tiny_gpt_oss_dir(tmp_path):
    """config.json with the repo's tiny GPT-OSS attention layout (xpdctl/models/tiny_gpt_oss.py)."""
    (tmp_path / "config.json").write_text(json.dumps({"layer_types": LAYER_TYPES, "sliding_window": SLIDING_WINDOW}))
    return tmp_path


def test_tiny_gpt_oss_evicted_sliding_window_blocks_are_not_a_cached_prefix(tiny_gpt_oss_dir):
    groups = groups_of(tiny_gpt_oss_dir, hybrid_kv_cache_manager=True)
    assert groups == (Group(window=32), Group())  # layer 0 is sliding: group 0, as vLLM numbers them
    assert groups_of(tiny_gpt_oss_dir, hybrid_kv_cache_manager=False) == FULL
    index = InstanceIndex(16, groups)  # window 32 at block size 16: the 2 blocks before the hit point
    index.apply(0, _batch(_stored(PROMPT, group=1), _stored(PROMPT, group=0)))
    assert index.cached_blocks(KEYS) == 6
    index.apply(1, _batch(_removed(PROMPT[4:6], group=0)))  # the window's blocks of the full prefix evicted
    assert index.cached_blocks(KEYS) == 4  # full attention still holds 6, but only 4 have their window
    index.apply(2, _batch(_removed(PROMPT[3:4], group=0)))
    assert index.cached_blocks(KEYS) == 3  # blocks 1-2 hold the window before block 3
    index.apply(3, _batch(_removed(PROMPT[1:2], group=0)))
    assert index.cached_blocks(KEYS) == 1  # only block 0 (a hit shorter than the window counts whole)
    index.apply(4, _batch(_removed(PROMPT[0:1], group=1)))
    assert index.cached_blocks(KEYS) == 0  # full attention lost block 0: nothing is reusable


def test_a_layout_the_router_does_not_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"layer_types": ["sliding_attention", "sliding_attention",
                                                                       "full_attention"], "sliding_window": 8}))
    with pytest.raises(LayoutError, match="unequal layer counts"):
        groups_of(tmp_path, True)
    with pytest.raises(LayoutError, match="cannot read"):
        groups_of(tmp_path / "missing", True)
