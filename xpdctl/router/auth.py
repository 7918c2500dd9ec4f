"""Client keys at the front door: who may send requests, and how much.

``Authorization: Bearer <key>`` is hashed (sha256) and looked up among the configured keys' hashes:
the router's config holds hashes only. A dict lookup of the digest is the whole check, so it costs the
same for any key; there is no per-character comparison to time. Open mode (``auth.mode: open``)
serves every request, as before keys existed.
"""

from __future__ import annotations

import hashlib

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from xpdctl.router.config import Auth
from xpdctl.router.limits import KeyState, OverLimit
from xpdctl.router.openai_errors import error_response

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Refused(Exception):
    def __init__(self, response: web.Response):
        self.response = response


class KeyGate:
    def __init__(self, auth: Auth):
        self._by_digest: dict[str, KeyState] = {}
        self.configure(auth)

    def configure(self, auth: Auth) -> None:
        """A reload: a key whose hash stays keeps its state (requests in flight, buckets, counters)."""
        self.open = auth.mode == "open"
        kept = {}
        for key in auth.keys:
            state = self._by_digest.get(key.sha256)
            if state is None:
                state = KeyState(key)
            else:
                state.configure(key)
            kept[key.sha256] = state
        self._by_digest = kept

    def identify(self, request: web.Request) -> KeyState | None:
        """The request's key, None in open mode; raises Refused (401) without a valid key."""
        if self.open:
            return None
        header = request.headers.get("Authorization")
        if not header:
            raise Refused(error_response(401, "no API key: send it as `Authorization: Bearer <key>`", _CHALLENGE))
        scheme, _, key = header.partition(" ")
        state = self._by_digest.get(key_digest(key.strip())) if scheme.lower() == "bearer" else None
        if state is None:
            raise Refused(error_response(401, "invalid API key", _CHALLENGE))
        return state

    def admit(self, request: web.Request) -> KeyState | None:
        """``identify``, then the key's limits: raises Refused (401, or 429 with Retry-After)."""
        state = self.identify(request)
        if state is not None:
            try:
                state.admit()
            except OverLimit as over:
                raise Refused(error_response(429, over.message, {"Retry-After": over.retry_after})) from over
        return state

    def states(self) -> list[KeyState]:
        return list(self._by_digest.values())


class KeyCollector:
    """Per-key metrics, read from the key records at scrape time (the request path only counts)."""

    def __init__(self, gate: KeyGate):
        self._gate = gate

    def collect(self):
        requests = CounterMetricFamily("xpd_router_key_requests", "Admitted requests per client key id and status.",
                                       labels=["key_id", "status"])
        rejected = CounterMetricFamily("xpd_router_key_rejected", "Requests refused by a key's limit.",
                                       labels=["key_id", "limit"])
        tokens = CounterMetricFamily("xpd_router_key_tokens", "Tokens per client key id (the engines' usage).",
                                     labels=["key_id", "kind"])
        in_flight = GaugeMetricFamily("xpd_router_key_in_flight", "Requests in flight per client key id.", labels=["key_id"])
        for key in self._gate.states():
            for status, n in sorted(key.requests.items()):
                requests.add_metric([key.id, str(status)], n)
            for limit, n in sorted(key.rejected.items()):
                rejected.add_metric([key.id, limit], n)
            tokens.add_metric([key.id, "prompt"], key.prompt_tokens)
            tokens.add_metric([key.id, "completion"], key.completion_tokens)
            in_flight.add_metric([key.id], key.in_flight)
        yield requests
        yield rejected
        yield tokens
        yield in_flight
