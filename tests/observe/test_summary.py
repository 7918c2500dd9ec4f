"""The one-screen text of a cluster status."""

from __future__ import annotations

from xpdctl.observe.summary import MAX_PROBLEM_LINES, render_text
from xpdctl.probes import nvidia
from xpdctl.status_model import ClusterStatus, EngineStatus, HostStatus, OsInfo, Problem, RouterBackend, RouterStatus


def _status(nvidia_text, problems: int) -> ClusterStatus:
    h200 = HostStatus(
        name="h200-01",
        address="10.0.0.5",
        reachable=True,
        os=OsInfo(id="ubuntu", version_id="24.04", kernel="6.8.0-45-generic"),
        accelerators=nvidia.parse_query_xml(nvidia_text("nvidia-smi-q.xml")),
        engines=[
            EngineStatus(
                service="xpd-lab-prefill-0",
                role="prefill",
                url="http://10.0.0.5:8100",
                healthy=True,
                vllm_version="0.32.0",
                models=["tiny"],
                requests_running=3,
                requests_waiting=1,
                kv_cache_usage_pct=41.6,
            )
        ],
        routers=[
            RouterStatus(
                service="xpd-lab-router",
                url="http://10.0.0.5:8000",
                reachable=True,
                healthy=True,
                usable_pairs=1,
                backends=[
                    RouterBackend(
                        url="http://10.0.0.5:8100",
                        pool="prefill",
                        generation="g1",
                        state="draining",
                        healthy=True,
                        draining=True,
                        in_flight=2,
                    )
                ],
            )
        ],
        drift_checked=True,
    )
    gone = HostStatus(name="mi300x-01", address="10.0.0.6", reachable=False, error="connection refused")
    found = [Problem(severity="warning", host="h200-01", what=f"w{i}", hint="h") for i in range(problems)]
    found.append(Problem(severity="error", host="mi300x-01", what="unreachable over SSH", hint="check ssh"))
    return ClusterStatus(
        cluster="lab",
        observed_at="2026-11-27T08:00:00+00:00",
        duration_s=0.42,
        healthy=False,
        hosts=[h200, gone],
        problems=found,
    )


def test_hosts_services_backends_and_verdict(nvidia_text):
    lines = render_text(_status(nvidia_text, problems=1)).splitlines()
    h200 = next(line for line in lines if line.startswith("h200-01"))
    assert "ubuntu 24.04" in h200 and "580.159.04 cuda 13.0" in h200 and "2x NVIDIA H200" in h200 and "0/281G" in h200
    assert next(line for line in lines if line.startswith("mi300x-01")).split()[:2] == ["mi300x-01", "NO"]
    engine = next(line for line in lines if line.startswith("xpd-lab-prefill-0"))
    assert engine.split()[3:] == ["-", "ok", "0.32.0", "tiny", "3", "1", "42%"]
    assert "ok, 0/1 backends serving" in next(line for line in lines if line.startswith("xpd-lab-router"))
    assert any(line.split()[-2:] == ["draining", "2"] for line in lines if line.startswith("http://10.0.0.5:8100"))
    # The error comes first although it was found last.
    problem_lines = [line for line in lines if line.startswith(("error", "warning"))]
    assert problem_lines[0].startswith("error   mi300x-01: unreachable over SSH")
    assert lines[-1].startswith("cluster lab: NOT healthy (1 errors, 1 warnings), 2 hosts observed in 0.4 s")


def test_problem_list_fits_one_screen(nvidia_text):
    text = render_text(_status(nvidia_text, problems=40))
    assert sum(line.startswith(("error", "warning")) for line in text.splitlines()) == MAX_PROBLEM_LINES
    assert f"... and {41 - MAX_PROBLEM_LINES} more problems" in text


def test_pair_transport_and_decode_nixl_counters_are_shown():
    """An operator sees how each pair's KV travels and that the decode's NIXL moved (or failed to move) KV."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from xpdctl.observe.http import parse_nixl_counters
    from xpdctl.status_model import KvAgentStatus, KvPairHealth

    # vLLM's own metric kinds and names (nixl/stats.py), exposed by the real prometheus_client.
    registry = CollectorRegistry()
    xfer = Histogram("vllm:nixl_xfer_time_seconds", "t", ["engine"], registry=registry)
    moved = Histogram("vllm:nixl_bytes_transferred", "b", ["engine"], registry=registry)
    failed = Counter("vllm:nixl_num_failed_transfers", "f", ["engine"], registry=registry)
    for engine, size in (("0", 4096), ("1", 8192)):
        xfer.labels(engine).observe(0.01)
        moved.labels(engine).observe(size)
    failed.labels("0")
    counters = parse_nixl_counters(generate_latest(registry).decode())
    assert counters["vllm:nixl_xfer_time_seconds_count"] == 2
    assert counters["vllm:nixl_bytes_transferred_sum"] == 12288
    assert counters["vllm:nixl_num_failed_transfers_total"] == 0
    assert not any(name.endswith("_bucket") for name in counters)

    decode = EngineStatus(service="xpd-lab-decode-0", role="decode", url="http://10.0.0.6:8200", healthy=True,
                          nixl=counters)
    pair = KvPairHealth(prefill_url="http://10.0.0.5:8100", decode_url="http://10.0.0.6:8200", ok=True,
                        measured_by="mi300x-01", transport="rc_mlx5/mlx5_0:1", transport_class="rdma")
    host = HostStatus(name="mi300x-01", address="10.0.0.6", reachable=True, engines=[decode],
                      kv_agents=[KvAgentStatus(service="xpd-lab-kv-agent", url="http://10.0.0.6:8788",
                                               reachable=True, pairs=[pair])])
    text = render_text(ClusterStatus(cluster="lab", observed_at="2026-12-01T22:00:00+00:00", duration_s=0.1,
                                     healthy=True, hosts=[host], problems=[]))
    assert "rdma" in text and "rc_mlx5/mlx5_0:1" in text
    row = next(line for line in text.splitlines() if line.startswith("xpd-lab-decode-0") and "12288" in line)
    assert row.split()[1:] == ["2", "12288", "0"]
