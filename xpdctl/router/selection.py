"""Which backend takes the next request: least in-flight, tie-broken by the engine's own load, and
only prefill->decode pairs that may exchange KV (same generation label, not reported broken). With a
prefix index (``want``), what each engine has cached of the prompt counts too (xpdctl/router/prefix.py
has the scoring rule)."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from typing import TYPE_CHECKING

from xpdctl.router.backends import Backend, Registry

if TYPE_CHECKING:
    from xpdctl.router.prefix import Want

# Rotate the starting point among exact ties so equal backends share work (one counter per pool,
# or picking a prefill and a decode per request would keep both counters in step).
_turns = {"prefill": itertools.count(), "decode": itertools.count()}


def _key(backend: Backend) -> tuple[int, float, float, float]:
    load = backend.load
    return (backend.in_flight, load.waiting, load.running, load.kv_usage)


def _least_loaded(candidates: list[Backend], pool: str, want: Want | None = None) -> Backend | None:
    if not candidates:
        return None
    start = next(_turns[pool]) % len(candidates)
    rotated = candidates[start:] + candidates[:start]
    if want is None:
        return min(rotated, key=_key)
    cached = {b.url: want.cached_tokens(b) for b in rotated}
    if pool == "prefill":
        chosen = min(rotated, key=lambda b: (want.tokens - cached[b.url] + want.load_weight * b.queued_tokens, *_key(b)))
    else:
        chosen = min(rotated, key=lambda b: (b.in_flight, -cached[b.url], *_key(b)[1:]))
    want.chosen(pool, chosen, cached[chosen.url])
    return chosen


def pair_ok(registry: Registry, prefill: Backend, decode: Backend) -> bool:
    return (
        decode.usable
        and prefill.generation == decode.generation
        and (prefill.url, decode.url) not in registry.broken_pairs
    )


def pick_prefill(registry: Registry, exclude: set[str], want: Want | None = None) -> Backend | None:
    """A usable prefill, not yet tried for this request, that has at least one decode to pair with."""
    candidates = [
        p for p in registry.prefills
        if p.usable and p.url not in exclude and any(pair_ok(registry, p, d) for d in registry.decodes)
    ]
    return _least_loaded(candidates, "prefill", want)


def pick_decode(registry: Registry, prefill: Backend | None, exclude: Collection[str] = (),
                want: Want | None = None) -> Backend | None:
    """A decode for the KV ``prefill`` computed; any usable decode when the request skips prefill."""
    candidates = [d for d in registry.decodes if d.url not in exclude]
    if prefill is None:
        return _least_loaded([d for d in candidates if d.usable], "decode", want)
    return _least_loaded([d for d in candidates if pair_ok(registry, prefill, d)], "decode", want)


def usable_pairs(registry: Registry) -> int:
    return sum(1 for p in registry.prefills if p.usable for d in registry.decodes if pair_ok(registry, p, d))
