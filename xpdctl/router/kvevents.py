"""One subscriber per engine on its KV event publisher (vLLM ``--kv-events-config``, ZMQ PUB), feeding
that engine's index. Whatever the stream does (garbage, silence, a restart behind the same address),
the loop keeps running and the index says what it knows: empty after any doubt (xpdctl/router/kvindex.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import zmq
import zmq.asyncio

from xpdctl.router import kvwire
from xpdctl.router.backends import Backend

log = logging.getLogger(__name__)

_POLL_MS = 500


class EventStats:
    """Counters the metrics collector reads: batches applied and index resets by reason, per engine URL."""

    def __init__(self) -> None:
        self.batches: Counter[str] = Counter()
        self.resets: Counter[tuple[str, str]] = Counter()

    def reset(self, backend: Backend, reason: str, why: str) -> None:
        self.resets[(backend.url, reason)] += 1
        log.warning("prefix index of %s %s dropped: %s; routing it by load until its events rebuild the index",
                    backend.pool, backend.url, why)


def _reason(why: str) -> str:
    if "restarted" in why:
        return "restart"
    return "gap" if "lost" in why else "mismatch"


async def events_loop(backend: Backend, stats: EventStats, silence_s: float) -> None:
    index = backend.kv_index
    assert index is not None and backend.kv_events is not None
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.connect(backend.kv_events)
    try:
        while True:
            if await sock.poll(_POLL_MS):
                frames = await sock.recv_multipart()
                try:
                    seq, batch = kvwire.decode(frames)
                except kvwire.BadMessage as exc:
                    index.reset(f"undecodable KV event message: {exc}")
                    index.last_seq = None  # the next good batch starts a new sequence
                    stats.reset(backend, "bad_message", str(exc))
                    continue
                stats.batches[backend.url] += 1
                index.expect_by = None
                why = index.apply(seq, batch)
                if why:
                    stats.reset(backend, _reason(why), why)
            elif index.expect_by is not None and time.monotonic() > index.expect_by and index.state == "ok":
                index.reset(f"no KV event for {silence_s:g} s after it was sent a request")
                index.expect_by = None
                stats.reset(backend, "silent", index.why)
            if backend.health == "unhealthy" and len(index):
                # It may come back restarted with an empty cache before its first event says so.
                index.reset("the engine failed its health checks")
                stats.reset(backend, "unhealthy", index.why)
    finally:
        sock.close(linger=0)
