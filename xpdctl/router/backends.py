"""The router's view of its engines: one record per backend, with its own HTTP session and state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from yarl import URL

from xpdctl.router.config import Backend as BackendSpec
from xpdctl.router.config import Timeouts
from xpdctl.router.kvindex import InstanceIndex


@dataclass
class Load:
    """The engine's own load, scraped from its /metrics (vLLM metric names)."""

    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0


def normalize_url(url: str) -> str:
    return url.rstrip("/")


def _session(timeouts: Timeouts) -> aiohttp.ClientSession:
    # One keep-alive session per upstream, with no connection cap: aiohttp's default of 100 would
    # queue streams beyond the hundredth inside the router. Idle connections are dropped well before
    # the engines drop theirs (xpdctl.plan.ENGINE_KEEP_ALIVE_S; vLLM's own default is 5 s), so a
    # request never lands on a connection being closed.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s)
    # No cookie jar (engines set none); no Accept-Encoding, so answers come uncompressed and their
    # bytes pass through as they are.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("Accept-Encoding", "User-Agent"))


class Backend:
    """A prefill or decode engine. ``health`` moves unknown -> healthy/unhealthy (see health.py)."""

    def __init__(self, spec: BackendSpec, timeouts: Timeouts):
        self.url = normalize_url(spec.url)
        self.pool = spec.pool
        self.generation = spec.generation
        self.name = spec.name
        self.session = _session(timeouts)
        self.completions_url = URL(self.url + "/v1/completions")
        self.chat_url = URL(self.url + "/v1/chat/completions")
        self.in_flight = 0
        # Prompt tokens the prefill legs in flight here still have to compute (their uncached part, as
        # the prefix index saw it when each was routed): the queue a new prompt waits behind.
        self.queued_tokens = 0
        self.health = "unknown"
        self.draining = False
        self.removed = False
        self.fails = 0
        self.successes = 0
        self.load = Load()
        self.kv_events = spec.kv_events
        self.block_size = spec.block_size
        # What the engine has cached, from its KV events (xpdctl/router/kvevents.py); None: not indexed.
        self.kv_index: InstanceIndex | None = None

    @property
    def usable(self) -> bool:
        return self.health == "healthy" and not self.draining and not self.removed

    @property
    def state(self) -> str:
        return "draining" if self.draining else self.health

    def describe(self) -> dict:
        return {
            "url": self.url,
            "pool": self.pool,
            "generation": self.generation,
            "name": self.name,
            "state": self.state,
            "health": self.health,
            "draining": self.draining,
            "in_flight": self.in_flight,
            "load": {"waiting": self.load.waiting, "running": self.load.running, "kv_cache_usage": self.load.kv_usage},
        }


class Registry:
    """Every backend the router knows, plus the prefill->decode pairs KV agents report broken."""

    def __init__(self, timeouts: Timeouts):
        # Only for the sessions of backends added from now on; every request passes its own timeout.
        self.timeouts = timeouts
        self._backends: dict[str, Backend] = {}
        self._retiring: dict[Backend, asyncio.Task] = {}
        self.prefills: list[Backend] = []
        self.decodes: list[Backend] = []
        self.broken_pairs: set[tuple[str, str]] = set()

    def __iter__(self) -> Iterator[Backend]:
        return iter(list(self._backends.values()))

    def get(self, url: str) -> Backend | None:
        return self._backends.get(normalize_url(url))

    def add(self, spec: BackendSpec) -> Backend:
        return self.insert(Backend(spec, self.timeouts))

    def insert(self, backend: Backend) -> Backend:
        """A backend record made (and maybe checked) beforehand."""
        if backend.url in self._backends:
            raise KeyError(backend.url)
        self._backends[backend.url] = backend
        self._reindex()
        return backend

    def remove(self, url: str) -> Backend:
        backend = self._backends.pop(normalize_url(url))
        backend.removed = True
        self._reindex()
        return backend

    def retire(self, url: str) -> Backend:
        """Remove a backend; requests already on it finish, then its connections close."""
        backend = self.remove(url)
        task = asyncio.create_task(self._close_when_idle(backend))
        self._retiring[backend] = task
        return backend

    async def _close_when_idle(self, backend: Backend) -> None:
        while backend.in_flight:
            await asyncio.sleep(0.1)
        await backend.session.close()
        del self._retiring[backend]

    async def close(self) -> None:
        """At shutdown: every session, those of retired backends still finishing included."""
        for task in self._retiring.values():
            task.cancel()
        await asyncio.gather(*(b.session.close() for b in [*self._backends.values(), *self._retiring]))

    def _reindex(self) -> None:
        self.prefills = [b for b in self._backends.values() if b.pool == "prefill"]
        self.decodes = [b for b in self._backends.values() if b.pool == "decode"]
