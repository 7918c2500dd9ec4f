"""Prefix-aware routing: the request's block hashes (tokenized once, hashed per block size) against
each engine's index of cached blocks, and the counters that say how well it goes.

Scoring (docs/router.md, Prefix-aware routing), over the candidates selection.py would consider:

- prefill: cost = (prompt tokens - tokens the engine has cached) + load_weight x the uncached tokens
  of the prefill legs already in flight on it (its queue, in the unit its compute is spent in); the
  lowest cost wins, ties broken on requests in flight and the engine's own load as before. A cached
  prefix wins while the work queued ahead of it on its engine is smaller than the work it saves.
- decode: fewest in flight first (its load is the stream it will carry for the whole answer); among
  equals the longest cached prefix, which it will not pull over NIXL (pull_scheduler.py:62-63).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from xpdctl.router.backends import Backend, Registry
from xpdctl.router.blockhash import block_hashes, event_key, hashable
from xpdctl.router.config import PrefixRouting
from xpdctl.router.kvevents import EventStats, events_loop
from xpdctl.router.kvindex import STATES, Group, InstanceIndex
from xpdctl.router.kvlayout import LayoutError, groups_of
from xpdctl.router.prompttokens import PromptTokens

log = logging.getLogger(__name__)

_RECONCILE_S = 1.0


class Want:
    """One request's prompt, as the engines' prefix caches see it."""

    def __init__(self, token_ids: list[int], router: PrefixRouter):
        self.tokens = len(token_ids)
        # vLLM never reuses the prompt's last token (it must compute it to sample), so at most the
        # blocks of all tokens but the last can hit (vllm/v1/core/kv_cache_manager.py:295: max_cache_hit_length = num_tokens - 1).
        self._ids = token_ids[:-1]
        self._hashes: dict[int, list[int]] = {}  # per block size: event keys of the prompt's blocks
        self.router = router
        self.load_weight = router.config.load_weight
        self.prefill_work = self.tokens  # what the chosen prefill must compute (set when it is chosen)

    def cached_tokens(self, backend: Backend) -> int:
        index = backend.kv_index
        if index is None or index.state != "ok":
            return 0
        hashes = self._hashes.get(index.block_size)
        if hashes is None:
            hashes = self._hashes[index.block_size] = [event_key(h) for h in block_hashes(self._ids, index.block_size)]
        return index.cached_blocks(hashes) * index.block_size

    def chosen(self, pool: str, backend: Backend, cached: int) -> None:
        if pool == "prefill":
            self.prefill_work = self.tokens - cached
        self.router.picks[(pool, "cached_prefix" if cached else "no_cached_prefix")] += 1
        self.router.prompt_tokens[pool] += self.tokens
        self.router.cached_tokens[pool] += cached
        index = backend.kv_index
        # Only a prompt with a full block the engine has not cached makes it announce something.
        if index is not None and index.expect_by is None and self.tokens // index.block_size * index.block_size > cached:
            index.expect_by = time.monotonic() + self.router.config.silence_s


class PrefixRouter:
    def __init__(self, config: PrefixRouting, registry: Registry):
        self.config = config
        self.registry = registry
        self.tokens = PromptTokens(config.tokenizer or "")
        self.stats = EventStats()
        self.layout: tuple[Group, ...] | None = None
        self.layout_error = ""
        self.picks: Counter[tuple[str, str]] = Counter()
        self.prompt_tokens: Counter[str] = Counter()
        self.cached_tokens: Counter[str] = Counter()
        self.untokenized = 0

    def want(self, body: dict, chat: bool) -> Want | None:
        if self.layout is None or not hashable(body):
            return None
        ids = self.tokens.of(body, chat)
        if not ids:
            self.untokenized += 1
            return None
        return Want(ids, self)

    async def run(self) -> None:
        """Load the tokenizer, then keep one event subscriber per engine that publishes events."""
        try:
            self.layout = groups_of(self.tokens.model_dir, self.config.hybrid_kv_cache_manager)
        except LayoutError as exc:
            self.layout_error = str(exc)
            log.warning("prefix routing off: %s; routing by load only", exc)
            return
        await self.tokens.load()
        if self.tokens.state != "ready":
            self.layout = None
            return
        tasks: dict[Backend, asyncio.Task] = {}
        try:
            while True:
                live = {b for b in self.registry if b.kv_events and b.block_size}
                for backend in live - tasks.keys():
                    backend.kv_index = InstanceIndex(backend.block_size or 0, self.layout)
                    tasks[backend] = asyncio.create_task(events_loop(backend, self.stats, self.config.silence_s))
                for backend in tasks.keys() - live:
                    tasks.pop(backend).cancel()
                    backend.kv_index = None
                await asyncio.sleep(_RECONCILE_S)
        finally:
            for backend, task in tasks.items():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                backend.kv_index = None


class PrefixCollector:
    """The prefix-routing series, read from the live state at scrape time."""

    def __init__(self, current):
        self._current = current  # () -> PrefixRouter | None: a reload may replace it

    def collect(self):
        router: PrefixRouter | None = self._current()
        enabled = GaugeMetricFamily("xpd_router_prefix_routing", "1 for the state of prefix-aware routing: working "
                                    "(tokenizer loaded, KV layout understood), loading, load_only (it cannot work; the "
                                    "log says why).", labels=["state"])
        index_state = GaugeMetricFamily("xpd_router_kv_index_state", "1 for the state of each engine's prefix index "
                                        "(ok: used; empty: nothing known since the last reset; mismatch: load-only).",
                                        labels=["url", "pool", "state"])
        blocks = GaugeMetricFamily("xpd_router_kv_index_blocks", "Cached blocks the index knows of, all groups.",
                                   labels=["url", "pool"])
        batches = CounterMetricFamily("xpd_router_kv_event_batches", "KV event batches applied.", labels=["url"])
        resets = CounterMetricFamily("xpd_router_kv_index_resets", "Indexes dropped, by reason (gap, restart, "
                                     "bad_message, silent, unhealthy, mismatch).", labels=["url", "reason"])
        picks = CounterMetricFamily("xpd_router_prefix_picks", "Backends picked with a prefix index, by whether "
                                    "the chosen one had part of the prompt cached.", labels=["pool", "outcome"])
        prompt = CounterMetricFamily("xpd_router_prefix_prompt_tokens", "Prompt tokens of requests routed with "
                                     "an index.", labels=["pool"])
        cached = CounterMetricFamily("xpd_router_prefix_cached_tokens", "Of those, tokens the chosen engine was "
                                     "expected to have cached.", labels=["pool"])
        untokenized = CounterMetricFamily("xpd_router_prefix_untokenized", "Requests routed by load because "
                                          "their prompt could not be tokenized (e.g. a chat template refused them).")
        if router is not None:
            state = "working" if router.layout is not None and router.tokens.state == "ready" else (
                "loading" if router.tokens.state == "loading" and not router.layout_error else "load_only")
            for each in ("working", "loading", "load_only"):
                enabled.add_metric([each], 1.0 if each == state else 0.0)
            for b in router.registry:
                if b.kv_index is None:
                    continue
                for s in STATES:
                    index_state.add_metric([b.url, b.pool, s], 1.0 if b.kv_index.state == s else 0.0)
                blocks.add_metric([b.url, b.pool], len(b.kv_index))
            for url, n in router.stats.batches.items():
                batches.add_metric([url], n)
            for (url, reason), n in router.stats.resets.items():
                resets.add_metric([url, reason], n)
            for (pool, outcome), n in router.picks.items():
                picks.add_metric([pool, outcome], n)
            for pool, n in router.prompt_tokens.items():
                prompt.add_metric([pool], n)
            for pool, n in router.cached_tokens.items():
                cached.add_metric([pool], n)
            untokenized.add_metric([], router.untokenized)
        yield from (enabled, index_state, blocks, batches, resets, picks, prompt, cached, untokenized)
