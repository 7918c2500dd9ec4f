"""HTTP probes of the services a host runs: engines, the router's admin API, KV agents.

Every probe answers, even when the service does not: a failure becomes ``error`` on the result,
never an exception, so one dead engine does not hide the rest of the cluster.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from xpdctl.status_model import EngineStatus, KvAgentStatus, KvPairHealth, RouterBackend, RouterStatus

# EngineStatus field -> (metric names, newest first; how label sets combine; scale). vLLM reports
# KV cache usage as a fraction (1 = 100 %); 0.x before 0.10 called it gpu_cache_usage_perc.
ENGINE_METRICS: dict[str, tuple[tuple[str, ...], Callable[[list[float]], float], float]] = {
    "requests_running": (("vllm:num_requests_running",), sum, 1.0),
    "requests_waiting": (("vllm:num_requests_waiting",), sum, 1.0),
    "kv_cache_usage_pct": (("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), max, 100.0),
}


class ProbeFailed(Exception):
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})" if exc.os_error else "cannot connect"
    if isinstance(exc, ProbeFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _get(session: aiohttp.ClientSession, url: str, *, want: str, headers: dict | None = None,
               context: ssl.SSLContext | None = None) -> Any:
    async with session.get(url, headers=headers, ssl=context or True) as resp:
        if resp.status != 200:
            raise ProbeFailed(f"GET {url} answered HTTP {resp.status}")
        return await (resp.json(content_type=None) if want == "json" else resp.text())


def parse_engine_metrics(text: str) -> dict[str, float]:
    """The :data:`ENGINE_METRICS` values found in a Prometheus text exposition."""
    samples: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.value)
    found = {}
    for field, (names, combine, scale) in ENGINE_METRICS.items():
        for name in names:
            if samples.get(name):
                found[field] = combine(samples[name]) * scale
                break
    return found


def parse_nixl_counters(text: str) -> dict[str, float]:
    """Every vllm:nixl_* sample but histogram buckets, summed over its labels."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("vllm:nixl_") and not sample.name.endswith(("_bucket", "_created")):
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


async def probe_engine(session: aiohttp.ClientSession, *, service: str, role: str, url: str,
                       api_key: str | None = None) -> EngineStatus:
    health, metrics, models, version = await asyncio.gather(
        _get(session, f"{url}/health", want="text"),
        _get(session, f"{url}/metrics", want="text"),
        _get(session, f"{url}/v1/models", want="json", headers={"Authorization": f"Bearer {api_key}"} if api_key else None),
        _get(session, f"{url}/version", want="json"),
        return_exceptions=True,
    )
    fields: dict[str, Any] = {}
    if not isinstance(metrics, BaseException):
        try:
            fields.update(parse_engine_metrics(metrics))
            fields["nixl"] = parse_nixl_counters(metrics)
        except ValueError:
            pass  # not Prometheus text: leave the numbers unknown
    if isinstance(models, dict):
        fields["models"] = [str(card.get("id")) for card in models.get("data", []) if isinstance(card, dict)]
    if isinstance(version, dict) and version.get("version"):
        fields["vllm_version"] = str(version["version"])
    error = _describe(health) if isinstance(health, BaseException) else None
    return EngineStatus(service=service, role=role, url=url, healthy=error is None, error=error, **fields)


async def probe_kv_agent(session: aiohttp.ClientSession, *, service: str, url: str) -> KvAgentStatus:
    try:
        body = await _get(session, f"{url}/pairs", want="json")
        pairs = [
            KvPairHealth(
                prefill_url=str(pair.get("prefill_url")),
                decode_url=str(pair.get("decode_url")),
                ok=bool(pair.get("ok")),
                reason=pair.get("reason") or None,
                measured_by=pair.get("measured_by"),
                transport=pair.get("transport"),
                transport_class=pair.get("transport_class"),
            )
            for pair in body.get("pairs", [])
        ]
    except Exception as exc:  # every failure is reported, none escapes
        return KvAgentStatus(service=service, url=url, reachable=False, error=_describe(exc))
    return KvAgentStatus(service=service, url=url, reachable=True, pairs=pairs)


def _backend(item: dict) -> RouterBackend:
    """One entry of the router's ``GET /admin/backends`` (xpdctl.router.backends.Backend.describe)."""
    in_flight = item.get("in_flight")
    return RouterBackend(
        url=str(item.get("url")),
        pool=item.get("pool"),
        generation=item.get("generation"),
        state=str(item.get("state") or item.get("health") or "unknown"),
        healthy=item.get("health") == "healthy",
        draining=bool(item.get("draining")),
        in_flight=in_flight if isinstance(in_flight, int) else None,
    )


async def _router_health(session: aiohttp.ClientSession, url: str,
                         context: ssl.SSLContext | None) -> tuple[int, dict]:
    async with session.get(f"{url}/health", ssl=context or True) as resp:
        body = await resp.json(content_type=None) if resp.content_type == "application/json" else {}
        return resp.status, body if isinstance(body, dict) else {}


async def _router_backends(session: aiohttp.ClientSession, url: str, token: str | None,
                           context: ssl.SSLContext | None) -> list[RouterBackend]:
    if token is None:
        raise ProbeFailed(
            "no admin token in the rendered router config; set one in the inventory to see backend states"
        )
    body = await _get(session, f"{url}/admin/backends", want="json", headers={"Authorization": f"Bearer {token}"},
                      context=context)
    items = body.get("backends", []) if isinstance(body, dict) else body
    return [_backend(item) for item in items if isinstance(item, dict)]


async def probe_router(session: aiohttp.ClientSession, *, service: str, url: str, token: str | None,
                       context: ssl.SSLContext | None = None) -> RouterStatus:
    """The router's own health (no token needed) and, with the admin token, its backends' states;
    ``context``: what an https URL is verified against (the cluster's CA), else the system's store."""
    health, backends = await asyncio.gather(
        _router_health(session, url, context), _router_backends(session, url, token, context), return_exceptions=True
    )
    status = RouterStatus(service=service, url=url, reachable=not isinstance(health, BaseException))
    if isinstance(health, BaseException):
        status.error = _describe(health)
    else:
        code, body = health
        status.healthy = code == 200
        usable = body.get("usable_pairs")
        status.usable_pairs = usable if isinstance(usable, int) else None
        status.error = None if status.healthy else f"GET {url}/health answered HTTP {code} ({body.get('status', '')})"
    if isinstance(backends, BaseException):
        status.backends_error = _describe(backends)
    else:
        status.backends = backends
    return status
