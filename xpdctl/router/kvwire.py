"""The wire format of vLLM's KV events (vllm/distributed/kv_events.py in 0.32), as msgspec structs.

The ZMQ publisher sends multipart messages ``(topic, seq, payload)``: ``seq`` an 8-byte big-endian
counter that starts at 0 when the engine starts and grows by one per batch (kv_events.py:374,
497-499), ``payload`` a msgpack ``KVEventBatch``: an array ``[ts, events, data_parallel_rank]``
(array_like, kv_events.py:31-39) whose events are maps tagged by their class name (tag=True,
kv_events.py:42-47). Field names, order and defaults are vLLM's, so the simulator, which encodes with
these structs, sends the same bytes an engine would (tests/vllm_tier/test_prefix_routing_vllm.py).
Unknown fields from a later vLLM are ignored.
"""

from __future__ import annotations

import msgspec

BlockHash = bytes | int  # int (the hash's low 64 bits) unless the engine sets VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0


class KVCacheEvent(msgspec.Struct, omit_defaults=True, gc=False, tag=True):
    pass


class BlockStored(KVCacheEvent):
    block_hashes: list[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None
    medium: str | None
    lora_name: str | None
    extra_keys: list[list | None] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None
    kv_cache_spec_sliding_window: int | None = None
    locality: str | None = None
    ownership: str | None = None
    session_id: str | None = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[BlockHash]
    medium: str | None
    group_idx: int | None = None
    locality: str | None = None
    ownership: str | None = None


class AllBlocksCleared(KVCacheEvent):
    pass


Event = BlockStored | BlockRemoved | AllBlocksCleared


class KVEventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Event]
    data_parallel_rank: int | None = None


_decoder = msgspec.msgpack.Decoder(KVEventBatch)
_encoder = msgspec.msgpack.Encoder()


class BadMessage(ValueError):
    pass


def decode(frames: list[bytes]) -> tuple[int, KVEventBatch]:
    """``(seq, batch)`` of one ZMQ message; BadMessage when it is not a KV event batch."""
    if len(frames) != 3 or len(frames[1]) != 8:
        raise BadMessage(f"expected 3 frames (topic, 8-byte seq, payload), got {len(frames)}")
    try:
        batch = _decoder.decode(frames[2])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadMessage(f"payload is not a KV event batch: {exc}") from exc
    return int.from_bytes(frames[1], "big", signed=True), batch


def encode(seq: int, batch: KVEventBatch, topic: bytes = b"") -> tuple[bytes, bytes, bytes]:
    return topic, seq.to_bytes(8, "big"), _encoder.encode(batch)
