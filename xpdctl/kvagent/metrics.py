"""Prometheus metrics of one KV agent, in a registry of its own (never the process-global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from xpdctl.kvagent.models import PairResult, TransferResult

_PAIR = ["prefill", "decode"]
_PEER = ["peer_host"]


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.pair_ok = Gauge("xpdctl_kvagent_pair_ok", "1 when the prefill->decode KV path is ok", _PAIR, registry=r)
        self.side_channel = Gauge(
            "xpdctl_kvagent_side_channel_reachable", "1 when the prefill's NIXL side channel accepts TCP",
            [*_PAIR, "side_channel"], registry=r,
        )
        self.bandwidth = Gauge(
            "xpdctl_kvagent_probe_bandwidth_bytes_per_second", "NIXL READ bandwidth of the last probe",
            _PEER, registry=r,
        )
        self.latency = Gauge(
            "xpdctl_kvagent_probe_latency_seconds", "NIXL READ latency of a 4 KiB buffer, last probe",
            _PEER, registry=r,
        )
        self.transport = Gauge(
            "xpdctl_kvagent_transport_info", "UCX transport that carried the last probe (value is always 1)",
            [*_PEER, "transport", "transport_class"], registry=r,
        )
        self.probes = Counter("xpdctl_kvagent_probes", "NIXL probes run, by result", [*_PEER, "result"], registry=r)
        self._transport_labels: dict[str, tuple[str, str, str]] = {}

    def record_round(self, pairs: list[PairResult], new_transfers: list[TransferResult]) -> None:
        self.pair_ok.clear()
        self.side_channel.clear()
        for pair in pairs:
            self.pair_ok.labels(pair.prefill, pair.decode).set(1 if pair.ok else 0)
            if pair.side_channel_reachable is not None:
                self.side_channel.labels(pair.prefill, pair.decode, pair.side_channel).set(
                    1 if pair.side_channel_reachable else 0
                )
        for transfer in new_transfers:
            peer = transfer.peer_host
            self.probes.labels(peer, "ok" if transfer.ok else "failed").inc()
            # A failed probe measured nothing: drop the last good figures rather than keep showing them.
            self.bandwidth.remove(peer)
            self.latency.remove(peer)
            if peer in self._transport_labels:
                self.transport.remove(*self._transport_labels.pop(peer))
            if not transfer.ok:
                continue
            if transfer.bandwidth_gbps is not None:
                self.bandwidth.labels(peer).set(transfer.bandwidth_gbps * 1e9 / 8)
            if transfer.latency_ms is not None:
                self.latency.labels(peer).set(transfer.latency_ms / 1e3)
            labels = (peer, transfer.transport or "unknown", transfer.transport_class or "unknown")
            self.transport.labels(*labels).set(1)
            self._transport_labels[peer] = labels

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
