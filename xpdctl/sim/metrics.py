"""Prometheus metrics under vLLM's names, so the router's load scraper and dashboards read a
simulator exactly like a real engine. Each simulator has its own registry (several run in one
test process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


class _LiveGauges:
    """Gauges read from the engine's state at scrape time: nothing to update per request."""

    def __init__(self, labels: dict[str, str], read: Callable[[], dict[str, float]]):
        self._labels = labels
        self._read = read

    def collect(self):
        for name, value in self._read().items():
            family = GaugeMetricFamily(name, name, labels=list(self._labels))
            family.add_metric(list(self._labels.values()), value)
            yield family


class SimMetrics:
    def __init__(self, model: str, read_gauges: Callable[[], dict[str, float]]):
        self.registry = CollectorRegistry()
        labels = {"model_name": model, "engine": "0"}
        self.registry.register(_LiveGauges(labels, read_gauges))
        names = list(labels)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, names + list(extra), registry=self.registry)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, names, buckets=_LATENCY_BUCKETS, registry=self.registry)

        self.prompt_tokens = counter("vllm:prompt_tokens", "Prefill tokens processed.").labels(**labels)
        # vLLM's names (vllm/v1/metrics/loggers.py): tokens looked up in the prefix cache, and found there.
        self.prefix_queries = counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.").labels(**labels)
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.").labels(**labels)
        self.generation_tokens = counter("vllm:generation_tokens", "Generation tokens processed.").labels(**labels)
        success = counter("vllm:request_success", "Finished requests.", ("finished_reason",))
        self.finished = {reason: success.labels(**labels, finished_reason=reason) for reason in ("stop", "length", "abort", "error")}
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.").labels(**labels)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency.").labels(**labels)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.").labels(**labels)
        # vLLM's NIXL connector name (vllm/distributed/kv_transfer/kv_connector/v1/nixl/stats.py): here the
        # wall time of the simulated pull. vllm:nixl_bytes_transferred is not imitated: no KV bytes move.
        self.kv_xfer = histogram("vllm:nixl_xfer_time_seconds", "KV pull time (simulated transfer).").labels(**labels)
