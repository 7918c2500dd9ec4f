"""Plan -> Prometheus file_sd target groups: one group per service, labelled as the alerts and the
dashboard group by (role, pool, vendor, host, generation, service)."""

from __future__ import annotations

from urllib.parse import urlsplit

from xpdctl.inventory.topology import hosts_by_name
from xpdctl.plan import Plan, Service

# Scrape job of each service role; the alert rules and the dashboard select by these names.
JOBS = {"prefill": "xpd-engines", "decode": "xpd-engines", "kv-agent": "xpd-kv-agents", "router": "xpd-routers"}


def _group(plan: Plan, service: Service) -> dict:
    host = hosts_by_name(plan.inventory)[service.host]
    labels = {"cluster": plan.cluster, "service": service.name, "role": service.role, "host": service.host,
              "vendor": host.vendor or "none"}
    if service.role in ("prefill", "decode"):
        labels["pool"] = service.role
        labels["generation"] = str(service.details["generation"])
    # The address the plan gives the service's URL: what other services reach it at, too.
    netloc = urlsplit(str(service.details["url"])).netloc
    return {"targets": [netloc], "labels": labels}


def target_groups(plan: Plan) -> dict[str, list[dict]]:
    """Scrape job -> its target groups, in host order."""
    groups: dict[str, list[dict]] = {job: [] for job in dict.fromkeys(JOBS.values())}
    for service in plan.services():
        groups[JOBS[service.role]].append(_group(plan, service))
    return groups
