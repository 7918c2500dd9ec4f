"""The alert names of the rendered rules (templates/observability/alerts.yml.j2), and the metric each
watches, so ``status`` can name the alert that fires for a problem it reports."""

from __future__ import annotations

ENGINE_DOWN = "XpdEngineDown"
ROUTER_DOWN = "XpdRouterDown"
KV_AGENT_DOWN = "XpdKvAgentDown"
NO_USABLE_PAIR = "XpdNoUsablePair"
BACKEND_UNHEALTHY = "XpdRouterBackendUnhealthy"
KV_PAIR_BROKEN = "XpdKvPairBroken"
KV_PAIR_NOT_RDMA = "XpdKvPairNotRdma"
ROUTER_5XX = "XpdRouter5xxRatioHigh"
QUEUE_GROWING = "XpdQueueGrowing"
TTFT_HIGH = "XpdTtftP99High"
ITL_HIGH = "XpdItlP99High"
GENERATION_MISMATCH = "XpdGenerationWithoutPartner"
ROUTER_CONFIG_DRIFT = "XpdRouterConfigDrift"

# Alert -> the metric its expression reads, as status prints it next to a problem.
METRIC = {
    ENGINE_DOWN: 'up{job="xpd-engines"}',
    ROUTER_DOWN: 'up{job="xpd-routers"}',
    KV_AGENT_DOWN: 'up{job="xpd-kv-agents"}',
    NO_USABLE_PAIR: "xpd_router_usable_pairs",
    BACKEND_UNHEALTHY: 'xpd_router_backend_state{state="unhealthy"}',
    KV_PAIR_BROKEN: "xpdctl_kvagent_pair_ok",
    KV_PAIR_NOT_RDMA: "xpdctl_kvagent_transport_info",
    ROUTER_5XX: 'xpd_router_requests_total{status=~"5.."}',
    QUEUE_GROWING: "xpd_router_queue_waiting",
    TTFT_HIGH: "xpd_router_ttft_seconds_bucket",
    ITL_HIGH: "vllm:inter_token_latency_seconds_bucket",
    GENERATION_MISMATCH: 'up{role=~"prefill|decode"}',
    ROUTER_CONFIG_DRIFT: "xpd_router_config_info",
}
