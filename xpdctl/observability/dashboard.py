"""The cluster's Grafana dashboard, built with grafanalib (JSON for file provisioning).

Every query selects by the scrape jobs and labels of :mod:`xpdctl.observability.targets`, so the same
dashboard reads any xpdctl cluster; ``$__rate_interval`` is Grafana's (at least 4 scrape intervals).
"""

from __future__ import annotations

import json

from grafanalib.core import Dashboard, GridPos, Target, Templating, Template, TimeSeries
from grafanalib._gen import DashboardEncoder

DATASOURCE = "${datasource}"
RATE = "$__rate_interval"


def _quantiles(metric: str, by: str, selector: str) -> list[Target]:
    return [
        Target(expr=f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
               legendFormat=f"p{int(q * 100)} " + " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",")),
               refId=chr(ord("A") + i))
        for i, q in enumerate((0.5, 0.99))
    ]


def _targets(*pairs: tuple[str, str]) -> list[Target]:
    return [Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


ENGINES = 'job="xpd-engines"'
ROUTERS = 'job="xpd-routers"'

# (title, unit, targets, description): the panels an operator reads first, in reading order.
PANELS: list[tuple[str, str, list[Target], str]] = [
    ("Request rate at the router", "reqps", _targets(
        (f"sum by (status) (rate(xpd_router_requests_total{{{ROUTERS}}}[{RATE}]))", "{{status}}")),
     "Client requests per second by HTTP status."),
    ("TTFT at the router (client view)", "s", _quantiles("xpd_router_ttft_seconds", "service", ROUTERS),
     "Request arrival to the first byte sent to the client: prefill, KV handoff and first decode step."),
    ("TTFT per pool and vendor (engines)", "s", _quantiles("vllm:time_to_first_token_seconds", "pool, vendor", ENGINES),
     "vLLM's own TTFT; on decode engines it starts when the decode leg arrives."),
    ("ITL per pool and vendor", "s", _quantiles("vllm:inter_token_latency_seconds", "pool, vendor", ENGINES),
     "Inter-token latency; the decode pool's is what streaming clients feel."),
    ("E2E latency per pool and vendor", "s", _quantiles("vllm:e2e_request_latency_seconds", "pool, vendor", ENGINES),
     "vLLM's end-to-end request latency per leg."),
    ("KV transfer time per engine (NIXL)", "s", _quantiles("vllm:nixl_xfer_time_seconds", "service", ENGINES),
     "vLLM's NIXL transfer time, per decode engine (vLLM's NIXL metrics are not per peer)."),
    ("KV bytes per engine (NIXL)", "Bps", _targets(
        (f"sum by (service) (rate(vllm:nixl_bytes_transferred_sum{{{ENGINES}}}[{RATE}]))", "{{service}}")),
     "Bytes per second moved by NIXL into each decode engine."),
    ("KV path per pair (KV agent probes)", "Bps", _targets(
        ("xpdctl_kvagent_probe_bandwidth_bytes_per_second", "{{host}} <- {{peer_host}}"),
        ("min by (prefill, decode) (xpdctl_kvagent_pair_ok)", "ok {{prefill}} -> {{decode}}")),
     "NIXL READ bandwidth of the agent's last probe per peer host, and whether each pair is ok (1)."),
    ("Queue depth", "short", _targets(
        (f"sum by (pool, vendor) (vllm:num_requests_waiting{{{ENGINES}}})", "waiting {{pool}} {{vendor}}"),
        (f"sum by (pool, vendor) (vllm:num_requests_running{{{ENGINES}}})", "running {{pool}} {{vendor}}"),
        (f"sum by (service) (xpd_router_queue_waiting{{{ROUTERS}}})", "router admission {{service}}")),
     "Requests waiting and running in the engines, and waiting for admission at the router."),
    ("Router retries and failures", "reqps", _targets(
        (f"sum by (leg) (rate(xpd_router_retries_total{{{ROUTERS}}}[{RATE}]))", "retry {{leg}}"),
        (f"sum by (pool, kind) (rate(xpd_router_upstream_errors_total{{{ROUTERS}}}[{RATE}]))", "failed {{pool}} {{kind}}"),
        (f"sum by (reason) (rate(xpd_router_queue_rejected_total{{{ROUTERS}}}[{RATE}]))", "rejected {{reason}}")),
     "Legs retried on another backend, failed legs by pool and kind, requests turned away."),
    ("Instances per generation", "short", _targets(
        (f"count by (pool, generation) (up{{{ENGINES}}} == 1)", "{{pool}} {{generation}}")),
     "Engines up per pool and KV generation: two generations in a pool means an upgrade is under way."),
    ("Targets up", "short", _targets(("sum by (job) (up)", "{{job}} up"), ("count by (job) (up)", "{{job}} total")),
     "Scrape targets answering, of all the rendered ones."),
]


def dashboard(cluster: str) -> Dashboard:
    panels = [
        TimeSeries(title=title, unit=unit, targets=targets, description=description, dataSource=DATASOURCE,
                   gridPos=GridPos(h=8, w=12, x=12 * (i % 2), y=8 * (i // 2)))
        for i, (title, unit, targets, description) in enumerate(PANELS)
    ]
    return Dashboard(
        title=f"xpdctl {cluster}",
        uid=f"xpdctl-{cluster}",
        tags=["xpdctl"],
        panels=panels,
        timezone="browser",
        refresh="10s",
        templating=Templating(list=[
            Template(name="datasource", type="datasource", query="prometheus", label="Prometheus", default="Prometheus"),
        ]),
    ).auto_panel_ids()


def dashboard_json(cluster: str) -> str:
    return json.dumps(dashboard(cluster).to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"
