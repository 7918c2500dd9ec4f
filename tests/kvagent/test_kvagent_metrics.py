"""The agent's Prometheus exposition from probe results."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from xpdctl.kvagent.metrics import AgentMetrics
from xpdctl.kvagent.models import PairResult, TransferResult


def _samples(metrics: AgentMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _pair(ok: bool) -> PairResult:
    return PairResult(
        prefill="p0", decode="d0", prefill_host="a", decode_host="b", prefill_url="http://a:1",
        decode_url="http://b:2", side_channel="a:5600", ok=ok, state="ok" if ok else "broken",
        reason="" if ok else "x", side_channel_reachable=True, measured_by="b",
    )


def _transfer(ok: bool) -> TransferResult:
    return TransferResult(
        peer_host="a", ok=ok, transport="tcp/eth0" if ok else None, transport_class="tcp" if ok else None,
        bandwidth_gbps=8.0 if ok else None, latency_ms=2.0 if ok else None, checked_at="t",
    )


def test_good_probe_exposes_bandwidth_latency_transport_and_pair():
    metrics = AgentMetrics()
    metrics.record_round([_pair(True)], [_transfer(True)])
    s = _samples(metrics)
    assert s[("xpdctl_kvagent_pair_ok", (("decode", "d0"), ("prefill", "p0")))] == 1
    assert s[("xpdctl_kvagent_probe_bandwidth_bytes_per_second", (("peer_host", "a"),))] == 1e9
    assert s[("xpdctl_kvagent_probe_latency_seconds", (("peer_host", "a"),))] == 0.002
    transport = (("peer_host", "a"), ("transport", "tcp/eth0"), ("transport_class", "tcp"))
    assert s[("xpdctl_kvagent_transport_info", transport)] == 1
    assert s[("xpdctl_kvagent_probes_total", (("peer_host", "a"), ("result", "ok")))] == 1


def test_failed_probe_drops_stale_figures_and_counts():
    metrics = AgentMetrics()
    metrics.record_round([_pair(True)], [_transfer(True)])
    metrics.record_round([_pair(False)], [_transfer(False)])
    s = _samples(metrics)
    assert s[("xpdctl_kvagent_pair_ok", (("decode", "d0"), ("prefill", "p0")))] == 0
    assert not [k for k in s if k[0] in (
        "xpdctl_kvagent_probe_bandwidth_bytes_per_second", "xpdctl_kvagent_transport_info")]
    assert s[("xpdctl_kvagent_probes_total", (("peer_host", "a"), ("result", "failed")))] == 1


def test_round_without_new_probe_keeps_last_figures():
    metrics = AgentMetrics()
    metrics.record_round([_pair(True)], [_transfer(True)])
    metrics.record_round([_pair(True)], [])
    assert _samples(metrics)[("xpdctl_kvagent_probe_bandwidth_bytes_per_second", (("peer_host", "a"),))] == 1e9


def test_registry_is_private():
    from prometheus_client import REGISTRY

    AgentMetrics()
    assert REGISTRY.get_sample_value("xpdctl_kvagent_pair_ok", {"prefill": "p0", "decode": "d0"}) is None
