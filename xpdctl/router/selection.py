"""Which backend takes the next request: least in-flight, tie-broken by the engine's own load, and
only prefill->decode pairs that may exchange KV (same generation label, not reported broken)."""

from __future__ import annotations

import itertools
from collections.abc import Collection

from xpdctl.router.backends import Backend, Registry

# Rotate the starting point among exact ties so equal backends share work (one counter per pool,
# or picking a prefill and a decode per request would keep both counters in step).
_turns = {"prefill": itertools.count(), "decode": itertools.count()}


def _key(backend: Backend) -> tuple[int, float, float, float]:
    load = backend.load
    return (backend.in_flight, load.waiting, load.running, load.kv_usage)


def _least_loaded(candidates: list[Backend], pool: str) -> Backend | None:
    if not candidates:
        return None
    start = next(_turns[pool]) % len(candidates)
    return min(candidates[start:] + candidates[:start], key=_key)


def pair_ok(registry: Registry, prefill: Backend, decode: Backend) -> bool:
    return (
        decode.usable
        and prefill.generation == decode.generation
        and (prefill.url, decode.url) not in registry.broken_pairs
    )


def pick_prefill(registry: Registry, exclude: set[str]) -> Backend | None:
    """A usable prefill, not yet tried for this request, that has at least one decode to pair with."""
    candidates = [
        p for p in registry.prefills
        if p.usable and p.url not in exclude and any(pair_ok(registry, p, d) for d in registry.decodes)
    ]
    return _least_loaded(candidates, "prefill")


def pick_decode(registry: Registry, prefill: Backend | None, exclude: Collection[str] = ()) -> Backend | None:
    """A decode for the KV ``prefill`` computed; any usable decode when the request skips prefill."""
    candidates = [d for d in registry.decodes if d.url not in exclude]
    if prefill is None:
        return _least_loaded([d for d in candidates if d.usable], "decode")
    return _least_loaded([d for d in candidates if pair_ok(registry, prefill, d)], "decode")


def usable_pairs(registry: Registry) -> int:
    return sum(1 for p in registry.prefills if p.usable for d in registry.decodes if pair_ok(registry, p, d))
