"""The rendered Prometheus files checked by Prometheus's own tool (promtool, from Debian's
`prometheus` package, which ./install.sh --test installs): the config and its rules load, and every
alert fires on the series it watches, after its `for:` and not before."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from xpdctl.inventory import load_inventory
from xpdctl.observability import alerts
from xpdctl.plan import build_plan
from xpdctl.render import render_files, write_tree

PROMETHEUS = "observability/prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: ./install.sh --test installs Debian's prometheus package")
    return path


def _render(inventory: str, out: Path) -> Path:
    write_tree(render_files(build_plan(load_inventory(inventory), {})), out)
    return out / PROMETHEUS


@pytest.mark.parametrize("inventory", ["inventory/lab.yaml", "inventory/local.yaml"])
def test_rendered_config_and_rules_load(promtool, inventory, tmp_path):
    prom = _render(inventory, tmp_path)
    done = subprocess.run([promtool, "check", "config", str(prom / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((prom / "rules/xpdctl-alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    # lab declares RDMA NICs, local does not: the not-RDMA alert exists only where RDMA is expected.
    expected = set(alerts.METRIC) - (set() if "lab" in inventory else {alerts.KV_PAIR_NOT_RDMA})
    assert names == expected


def _alert(labels: dict, summary: str, description: str, severity: str) -> dict:
    return {"exp_labels": {**labels, "severity": severity},
            "exp_annotations": {"summary": summary, "description": description}}


def _case(at: str, name: str, *expected: dict) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(expected)}


DECODE = {"job": "xpd-engines", "service": "xpd-lab-decode-0", "pool": "decode", "role": "decode", "host": "mi300x-01",
          "vendor": "amd", "generation": "g1"}
PREFILL = {**DECODE, "service": "xpd-lab-prefill-0", "pool": "prefill", "role": "prefill", "host": "h100-01",
           "vendor": "nvidia"}
ROUTER = {"job": "xpd-routers", "service": "xpd-lab-router", "host": "gw-01"}
AGENT = {"job": "xpd-kv-agents", "service": "xpd-lab-kv-agent", "host": "mi300x-01"}


def _series(labels: dict, values: str, metric: str) -> dict:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def test_every_alert_fires_after_its_for_window(promtool, tmp_path):
    """inventory/lab.yaml's thresholds: down_for 60 s, TTFT p99 2 s, ITL p99 0.2 s (defaults)."""
    prom = _render("inventory/lab.yaml", tmp_path)
    rendered = yaml.safe_load((prom / "rules/xpdctl-alerts.yml").read_text())
    sha = next(r for g in rendered["groups"] for r in g["rules"] if r["alert"] == alerts.ROUTER_CONFIG_DRIFT)["expr"]
    assert 'sha256!="' in sha
    pair = {"job": "xpd-kv-agents", "prefill": "http://10.0.0.11:8100", "decode": "http://10.0.0.21:8200"}
    tcp = {**AGENT, "peer_host": "10.0.0.11", "transport": "tcp", "transport_class": "tcp"}
    rdma = {**AGENT, "host": "h100-01", "peer_host": "10.0.0.21", "transport": "rc_mlx5", "transport_class": "rdma"}
    backend = {**ROUTER, "url": "http://10.0.0.21:8200", "pool": "decode", "state": "unhealthy"}
    decode_g2 = {**DECODE, "service": "xpd-lab-decode-1", "generation": "g2"}
    series = [
        # a decode engine stops answering at 1 m; the prefill keeps answering
        _series(DECODE, "1 1 0 0 0 0 0", "up"), _series(PREFILL, "1x6", "up"),
        # a decode of another generation, without a prefill of it
        _series(decode_g2, "1x6", "up"),
        _series(ROUTER, "1 1 0 0 0 0 0", "up"), _series(AGENT, "1 1 0 0 0 0 0", "up"),
        _series(ROUTER, "1 1 0 0 0 0 0", "xpd_router_usable_pairs"),
        _series(backend, "0 0 1 1 1 1 1", "xpd_router_backend_state"),
        _series(pair, "1 1 0 0 0 0 0", "xpdctl_kvagent_pair_ok"),
        _series(tcp, "1x6", "xpdctl_kvagent_transport_info"), _series(rdma, "1x6", "xpdctl_kvagent_transport_info"),
        _series({**ROUTER, "path": "/etc/xpdctl/router.yaml", "sha256": "0" * 64}, "1x6", "xpd_router_config_info"),
    ]
    # service level (each sample 30 s apart, see interval below): 1 in 3 requests fails with 503,
    # the admission queue grows, TTFT p99 lands between 2.5 s and 5 s, ITL p99 between 0.25 s and 0.5 s.
    slow = "0+0x40"
    series += [
        _series({**ROUTER, "route": "/v1/completions", "status": "200"}, "0+20x40", "xpd_router_requests_total"),
        _series({**ROUTER, "route": "/v1/completions", "status": "503"}, "0+10x40", "xpd_router_requests_total"),
        _series(ROUTER, "0+1x40", "xpd_router_queue_waiting"),
        _series({**ROUTER, "le": "2.5"}, slow, "xpd_router_ttft_seconds_bucket"),
        _series({**ROUTER, "le": "5.0"}, "0+10x40", "xpd_router_ttft_seconds_bucket"),
        _series({**ROUTER, "le": "+Inf"}, "0+10x40", "xpd_router_ttft_seconds_bucket"),
        _series({**DECODE, "le": "0.25"}, slow, "vllm:inter_token_latency_seconds_bucket"),
        _series({**DECODE, "le": "0.5"}, "0+10x40", "vllm:inter_token_latency_seconds_bucket"),
        _series({**DECODE, "le": "+Inf"}, "0+10x40", "vllm:inter_token_latency_seconds_bucket"),
    ]
    down = "Prometheus cannot scrape it; check its unit (`xpdctl status`, journalctl -u <service>)."
    router_down = _alert(ROUTER, "router xpd-lab-router on gw-01 is down",
                         "No request reaches the cluster; check the router unit and log.", "critical")

    def generation_alerts(*generations: str) -> list[dict]:
        return [_alert({"generation": g}, f"generation {g} has engines of one pool only",
                       "Prefill and decode pair only within a generation (docs/upgrade.md); finish or roll back the "
                       "upgrade.", "warning") for g in generations]

    tests = [
        # 1 m: just went down, pending; 2.5 m: down for 90 s > 60 s, firing
        _case("1m", alerts.ENGINE_DOWN),
        _case("150s", alerts.ENGINE_DOWN,
              _alert(DECODE, "decode engine xpd-lab-decode-0 on mi300x-01 is down", down, "critical")),
        _case("1m", alerts.ROUTER_DOWN), _case("150s", alerts.ROUTER_DOWN, router_down),
        # firing 90 s after the series went bad (the tcp probe fires, the rdma one does not)
        *(_case("150s", name, _alert(*expected)) for name, *expected in [
            (alerts.KV_AGENT_DOWN, AGENT, "KV agent on mi300x-01 is down",
             "The router keeps its last view of the KV pairs; check the kv-agent unit and log.", "warning"),
            (alerts.NO_USABLE_PAIR, ROUTER, "router xpd-lab-router has no usable prefill->decode pair",
             "Its /health answers 503; check the engines and the KV agents' /pairs.", "critical"),
            (alerts.BACKEND_UNHEALTHY, backend, "router backend http://10.0.0.21:8200 (decode) fails its health checks",
             "The router sends it nothing; check that engine.", "warning"),
            (alerts.KV_PAIR_BROKEN, pair, "KV pair http://10.0.0.11:8100 -> http://10.0.0.21:8200 is broken",
             "The router skips this pair; see the KV agent's /pairs for the reason.", "critical"),
            (alerts.KV_PAIR_NOT_RDMA, tcp, "KV to 10.0.0.11 goes over tcp (tcp), not RDMA",
             "Check UCX_NET_DEVICES, the NICs' ports (ibv_devinfo) and the KV agent's /pairs.", "warning"),
        ]),
        # g2 has only a decode from the start, g1 only a prefill once its decode went down
        _case("1m", alerts.GENERATION_MISMATCH, *generation_alerts("g2")),
        _case("150s", alerts.GENERATION_MISMATCH, *generation_alerts("g1", "g2")),
        _case("150s", alerts.ROUTER_CONFIG_DRIFT, _alert({**ROUTER, "path": "/etc/xpdctl/router.yaml", "sha256": "0" * 64},
            "router xpd-lab-router runs another config than the rendered one",
            "Run `xpdctl up` to apply the plan (or `xpdctl plan` to see the difference).", "warning")),
        _case("4m", alerts.ROUTER_5XX),
        _case("12m", alerts.ROUTER_5XX, _alert({"service": "xpd-lab-router"}, "33.33% of requests through xpd-lab-router fail with 5xx",
            "See xpd_router_upstream_errors_total for the failing pool and kind.", "critical")),
        _case("8m", alerts.QUEUE_GROWING),
        _case("16m", alerts.QUEUE_GROWING, _alert(ROUTER, "requests wait longer and longer for admission at xpd-lab-router",
            "Demand exceeds what the engines serve; add instances or lower load.", "warning")),
        _case("12m", alerts.TTFT_HIGH, _alert({"service": "xpd-lab-router"}, "TTFT p99 at xpd-lab-router is 4.975s (threshold 2.0 s)",
            "Look at prefill queue depth and the KV transfer time on the dashboard.", "warning")),
        _case("12m", alerts.ITL_HIGH, _alert({"pool": "decode", "vendor": "amd"}, "ITL p99 of the amd decode engines is 497.5ms "
            "(threshold 0.2 s)", "Decode engines are saturated; look at running requests and KV cache usage.", "warning")),
    ]
    suite = tmp_path / "alerts_test.yml"
    suite.write_text(yaml.safe_dump({
        "rule_files": [str(prom / "rules/xpdctl-alerts.yml")], "evaluation_interval": "15s",
        "tests": [{"interval": "30s", "input_series": series, "alert_rule_test": tests}],
    }, sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(suite)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {t["alertname"] for t in tests}
    assert tested == set(alerts.METRIC)
