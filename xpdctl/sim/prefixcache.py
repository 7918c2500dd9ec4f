"""The simulator's prefix cache: an LRU of block hashes computed as vLLM computes them
(xpdctl/router/blockhash.py), announced as vLLM's KV events on a ZMQ publisher with vLLM's wire format
(xpdctl/router/kvwire.py): one full-attention group, blocks stored once computed, the least recently
used evicted when the cache is full. What a prompt finds cached it does not compute again.
"""

from __future__ import annotations

from collections import OrderedDict

import zmq

from xpdctl.router import kvwire
from xpdctl.router.blockhash import block_hashes, event_key

MEDIUM = "GPU"


class Publisher:
    """vLLM's ZmqEventPublisher as a subscriber sees it: (topic, 8-byte seq, msgpack batch), seq from 0."""

    def __init__(self, endpoint: str):
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.seq = 0
        self.mode = "ok"  # ok | garbage | silent (Faults.kv_events)

    def send(self, events: list) -> None:
        seq, self.seq = self.seq, self.seq + 1
        if self.mode == "silent":  # lost: the subscriber sees the gap when the stream resumes
            return
        frames = kvwire.encode(seq, kvwire.KVEventBatch(ts=0.0, events=events))
        if self.mode == "garbage":
            frames = (frames[0], frames[1], b"\xc1 garbage " + frames[2][:16])
        self.sock.send_multipart(frames, flags=zmq.NOBLOCK)

    def close(self) -> None:
        self.sock.close(linger=0)


class PrefixCache:
    def __init__(self, capacity_blocks: int, block_size: int, publisher: Publisher | None):
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.publisher = publisher
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def cached_tokens(self, token_ids: list[int]) -> int:
        """Tokens of the prompt found cached (never its last: vLLM computes it to sample)."""
        hit = 0
        for h in block_hashes(token_ids[:-1], self.block_size):
            if h not in self._blocks:
                break
            hit += 1
        return hit * self.block_size

    def store(self, token_ids: list[int]) -> None:
        """The prompt's full blocks are computed: cache them, announce the new ones and the evicted."""
        hashes = block_hashes(token_ids, self.block_size)
        first_new = next((i for i, h in enumerate(hashes) if h not in self._blocks), len(hashes))
        for h in hashes:
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        evicted = []
        while len(self._blocks) > self.capacity:
            evicted.append(self._blocks.popitem(last=False)[0])
        events: list = []
        if first_new < len(hashes):
            bs = self.block_size
            events.append(kvwire.BlockStored(  # hashes as vLLM 0.32 publishes them by default
                block_hashes=[event_key(h) for h in hashes[first_new:]],
                parent_block_hash=event_key(hashes[first_new - 1]) if first_new else None,
                token_ids=token_ids[first_new * bs:len(hashes) * bs], block_size=bs, lora_id=None, medium=MEDIUM,
                lora_name=None, group_idx=0))
        events += [kvwire.BlockRemoved(block_hashes=[event_key(h)], medium=MEDIUM, group_idx=0) for h in evicted]
        if events and self.publisher is not None:
            self.publisher.send(events)
