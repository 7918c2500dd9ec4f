"""The router's Prometheus metrics, in a registry of its own (several routers may share a process).

Per-backend gauges (in-flight, health, draining) are read from the live backend records at scrape
time, so the request path never touches them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily

from xpdctl.router.backends import Registry
from xpdctl.router.selection import usable_pairs

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STATES = ("unknown", "healthy", "unhealthy", "draining")


class _BackendCollector:
    def __init__(self, backends: Registry, queue: Callable[[], tuple[int, int]]):
        self._backends = backends
        self._queue = queue

    def collect(self):
        in_flight = GaugeMetricFamily("xpd_router_backend_in_flight", "Requests in flight per backend.", labels=["url", "pool"])
        state = GaugeMetricFamily("xpd_router_backend_state", "1 for the backend's current state.", labels=["url", "pool", "state"])
        up = GaugeMetricFamily("xpd_router_backend_up", "1 when the backend may take new requests.", labels=["url", "pool"])
        for b in self._backends:
            in_flight.add_metric([b.url, b.pool], b.in_flight)
            up.add_metric([b.url, b.pool], 1.0 if b.usable else 0.0)
            for s in STATES:
                state.add_metric([b.url, b.pool, s], 1.0 if b.state == s else 0.0)
        active, waiting = self._queue()
        yield in_flight
        yield state
        yield up
        yield GaugeMetricFamily("xpd_router_requests_in_flight", "Admitted requests being served.", value=active)
        yield GaugeMetricFamily("xpd_router_queue_waiting", "Requests waiting for admission.", value=waiting)
        # What /health answers from: 0 makes it 503 (the XpdNoUsablePair alert).
        yield GaugeMetricFamily("xpd_router_usable_pairs", "Prefill->decode pairs usable now.",
                                value=usable_pairs(self._backends))


class RouterMetrics:
    def __init__(self, backends: Registry, queue: Callable[[], tuple[int, int]]):
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_BackendCollector(backends, queue))
        self._requests = Counter("xpd_router_requests", "Client requests by route and status.", ["route", "status"], registry=r)
        self._request_children: dict[tuple[str, int], object] = {}
        self.prefill_latency = Histogram("xpd_router_prefill_seconds", "Prefill leg latency.", buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("xpd_router_ttft_seconds", "Request arrival to first byte sent to the client.", buckets=_BUCKETS, registry=r)
        self.e2e = Histogram("xpd_router_e2e_seconds", "Request arrival to the end of the answer.", buckets=_BUCKETS, registry=r)
        self.retries = Counter("xpd_router_retries", "Legs retried on another backend.", ["leg"], registry=r)
        self.upstream_errors = Counter("xpd_router_upstream_errors", "Failed legs by pool and kind.", ["pool", "kind"], registry=r)
        self.disagg = Counter("xpd_router_disagg_decisions", "Conditional disaggregation decisions.", ["decision", "reason"], registry=r)
        self.rejected = Counter("xpd_router_queue_rejected", "Requests turned away by the admission queue.", ["reason"], registry=r)
        self.config_reloads = Counter("xpd_router_config_reloads", "Config file reloads (SIGHUP) by result: ok or error.",
                                      ["result"], registry=r)
        self.migrations = Counter("xpd_router_migrations", "Broken decode legs continued on another pair, by kind: stream "
                                  "(tokens already sent), restart (nothing sent yet), whole (a whole answer).", ["kind"], registry=r)
        self.not_migrated = Counter("xpd_router_not_migrated", "Broken decode legs that ended the request as without "
                                    "migration, by reason (docs/router.md).", ["reason"], registry=r)
        self.migration_gap = Histogram("xpd_router_migration_gap_seconds", "From a stream's failure to the next byte "
                                       "the client got from its continuation.", buckets=_BUCKETS, registry=r)
        # Series that exist at zero, so a rate over them (dashboards, alerts) reads 0 rather than nothing.
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        for leg in ("prefill", "decode"):
            self.retries.labels(leg)
        for reason in ("full", "timeout"):
            self.rejected.labels(reason)
        for kind in ("stream", "restart", "whole"):
            self.migrations.labels(kind)
        # What a script compares with the file on disk to know the router runs it: the sha256 of the
        # bytes last loaded (empty when the router was started from flags, without a file).
        self.config_file = Info("xpd_router_config", "The config file the router runs.", registry=r)
        self.config_file.info({"path": "", "sha256": ""})

    def request(self, route: str, status: int) -> None:
        child = self._request_children.get((route, status))
        if child is None:
            child = self._request_children[(route, status)] = self._requests.labels(route, str(status))
        child.inc()
