"""What one engine has in its prefix cache, as its KV events announced it: block hashes per KV cache
group, and how many leading blocks of a request the engine would reuse.

Never trusted stale: a sequence gap (lost events), a sequence that starts again (the engine
restarted), a message that does not decode, or an engine that stays silent after it was sent work
drops everything known and starts again from the next batch. An event the layout does not explain (a
group or a block size the router was not configured for) makes the instance load-only until it
restarts: the router would otherwise count blocks the engine cannot reuse.

Hybrid models (GPT-OSS: sliding-window and full-attention layers) have one group per attention kind
when vLLM's hybrid KV cache manager is on; vLLM reuses a prefix of k blocks only when every
full-attention group holds blocks 0..k-1 and every sliding-window group holds the last
ceil((window-1)/block_size) blocks before k (or all k when fewer), lowering k until every group agrees
(vllm/v1/core/single_type_kv_cache_manager.py:956-1053, SlidingWindowManager.find_longest_cache_hit;
the fixed point of HybridKVCacheCoordinator.find_longest_cache_hit, kv_cache_coordinator.py:796). A sliding-window block the
engine evicted is therefore not a cached prefix, even when the full-attention group still holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xpdctl.router.blockhash import event_key
from xpdctl.router.kvwire import AllBlocksCleared, BlockRemoved, BlockStored, KVEventBatch

# Index states (the xpd_router_kv_index_state metric): ok = events applied in order since the last
# reset; empty = nothing received yet (or since a reset); mismatch = load-only until the engine restarts.
STATES = ("ok", "empty", "mismatch")


@dataclass(frozen=True)
class Group:
    """One KV cache group: full attention, or a sliding window of ``window`` tokens."""

    window: int | None = None

    def blocks_needed(self, block_size: int) -> int | None:
        return None if self.window is None else math.ceil((self.window - 1) / block_size)


FULL = (Group(),)


class InstanceIndex:
    def __init__(self, block_size: int, groups: tuple[Group, ...] = FULL):
        self.block_size = block_size
        self.groups = groups
        self._blocks: list[set[int]] = [set() for _ in groups]  # event_key of each block's hash
        self.last_seq: int | None = None
        # Set when the engine is sent a request and cleared by its next batch: an engine that stays
        # silent past it has stopped publishing, and its index no longer sees evictions.
        self.expect_by: float | None = None
        self.state = "empty"
        self.why = "no KV event received yet"

    def __len__(self) -> int:
        return sum(len(b) for b in self._blocks)

    def reset(self, why: str) -> None:
        for blocks in self._blocks:
            blocks.clear()
        if self.state != "mismatch":
            self.state = "empty"
        self.why = why

    def apply(self, seq: int, batch: KVEventBatch) -> str | None:
        """Apply one batch; returns why the index was reset first, if it was (gap or restart)."""
        reset = None
        if self.last_seq is not None and seq <= self.last_seq:
            reset = f"sequence went back from {self.last_seq} to {seq}: the engine restarted"
            self.state = "empty"  # a restarted engine may have a layout that fits again
        elif self.last_seq is not None and seq != self.last_seq + 1:
            reset = f"{seq - self.last_seq - 1} event batch(es) lost (sequence {self.last_seq} -> {seq})"
        if reset:
            self.reset(reset)
        self.last_seq = seq
        if self.state == "mismatch":
            return reset
        for event in batch.events:
            problem = self._apply(event)
            if problem:
                self.reset(problem)
                self.state = "mismatch"
                return problem
        self.state, self.why = "ok", ""
        return reset

    def _apply(self, event) -> str | None:
        if isinstance(event, AllBlocksCleared):
            for blocks in self._blocks:
                blocks.clear()
            return None
        group = event.group_idx or 0
        if group >= len(self._blocks):
            return (f"event for KV cache group {group}, but the router expects {len(self._blocks)} group(s) "
                    "(prefix_routing.hybrid_kv_cache_manager and the model's layer types)")
        hashes = [event_key(h) for h in event.block_hashes]
        if isinstance(event, BlockStored):
            if event.block_size != self.block_size:
                return f"block size {event.block_size} in the events, {self.block_size} configured"
            if event.extra_keys and any(event.extra_keys):
                return None  # LoRA, multimodal or salted blocks: never a match for the router's hashes
            self._blocks[group].update(hashes)
        elif isinstance(event, BlockRemoved):
            self._blocks[group].difference_update(hashes)
        return None

    def cached_blocks(self, hashes: list[int]) -> int:
        """How many leading blocks of ``hashes`` (event keys, blockhash.event_key) the engine would reuse."""
        if self.state != "ok" or not hashes:
            return 0
        k = len(hashes)
        for group, blocks in zip(self.groups, self._blocks):
            if group.window is None:
                k = next((i for i in range(k) if hashes[i] not in blocks), k)
        while True:
            lowest = k
            for group, blocks in zip(self.groups, self._blocks):
                need = group.blocks_needed(self.block_size)
                if need is not None:
                    lowest = min(lowest, _window_hit(hashes, blocks, lowest, need))
            if lowest == k:
                return k
            k = lowest


def _window_hit(hashes: list[int], blocks: set[int], limit: int, need: int) -> int:
    """The largest k <= limit whose last ``need`` blocks (all k when fewer) the group holds."""
    run = 0
    for i in range(limit - 1, -1, -1):
        if hashes[i] in blocks:
            run += 1
            if run >= need:
                return i + run
        else:
            run = 0
    return run  # a run reaching block 0: all of it counts (vLLM keeps a hit shorter than the window)
