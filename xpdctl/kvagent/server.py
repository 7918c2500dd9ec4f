"""The KV agent's HTTP API (aiohttp) and its probe loop.

GET /health        200 when every pair is ok, else 503; per-pair detail either way
GET /pairs         {"pairs": [PairResult, ...]}  (the router reads prefill_url, decode_url, ok, reason)
GET /metrics       Prometheus text
GET /nixl/source   this host's NIXL metadata and probe buffers, for peer agents that pull from it
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from xpdctl.kvagent.config import KvAgentConfig
from xpdctl.kvagent.metrics import AgentMetrics
from xpdctl.kvagent.probe import Prober
from xpdctl.kvagent.source import LazySource
from xpdctl.kvagent.transfer import ProbeWorkers

log = logging.getLogger("xpdctl.kvagent")

_PROBER = web.AppKey("prober", Prober)
_SOURCE = web.AppKey("source", LazySource)
_METRICS = web.AppKey("metrics", AgentMetrics)
_CONFIG = web.AppKey("config", KvAgentConfig)


def _pairs_payload(prober: Prober) -> list[dict]:
    return [r.model_dump() for r in prober.results]


async def _health(request: web.Request) -> web.Response:
    prober = request.app[_PROBER]
    pairs = _pairs_payload(prober)
    started = prober.rounds > 0
    ok = started and all(p["ok"] for p in pairs)
    body = {
        "status": "ok" if ok else "unhealthy" if started else "starting",
        "host": request.app[_CONFIG].host,
        "pairs_total": len(pairs),
        "pairs_ok": sum(p["ok"] for p in pairs),
        "pairs": [{k: p[k] for k in ("prefill", "decode", "ok", "state", "reason", "transport")} for p in pairs],
    }
    return web.json_response(body, status=200 if ok else 503)


async def _pairs(request: web.Request) -> web.Response:
    return web.json_response({"pairs": _pairs_payload(request.app[_PROBER])})


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_METRICS].exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _nixl_source(request: web.Request) -> web.Response:
    try:
        info = await request.app[_SOURCE].info()
    except Exception as exc:  # noqa: BLE001 - the peer gets the reason instead of a bare 500
        return web.json_response({"error": f"NIXL source unavailable on this host: {exc}"}, status=503)
    return web.json_response(info.model_dump())


def _log_changes(results, last: dict[tuple[str, str], tuple[str, str]]) -> None:
    for r in results:
        key, now = (r.prefill, r.decode), (r.state, r.reason)
        if last.get(key) != now:
            level = logging.INFO if r.ok else logging.WARNING
            detail = f"via {r.transport}, {r.bandwidth_gbps:.2f} Gbit/s" if r.ok and r.bandwidth_gbps else ""
            detail = "; ".join(filter(None, (detail, r.reason)))
            log.log(level, "pair %s -> %s: %s (%s)", r.prefill, r.decode, r.state, detail)
        last[key] = now


async def _probe_loop(app: web.Application) -> None:
    prober, metrics = app[_PROBER], app[_METRICS]
    last: dict[tuple[str, str], tuple[str, str]] = {}
    while True:
        try:
            results = await prober.round()
        except Exception:  # noqa: BLE001 - a bug in one round must not stop the agent reporting
            log.exception("probe round failed; retrying in %s s", prober.config.check_interval_s)
        else:
            metrics.record_round(results, prober.new_transfers)
            _log_changes(results, last)
        await asyncio.sleep(prober.config.check_interval_s)


def build_app(config: KvAgentConfig) -> web.Application:
    app = web.Application()
    app[_CONFIG] = config
    app[_SOURCE] = LazySource(config.host, config.probe_size_mib, config.nixl_module)
    app[_METRICS] = AgentMetrics()

    async def lifecycle(app: web.Application):
        async with aiohttp.ClientSession() as session, ProbeWorkers(module=config.nixl_module) as workers:
            app[_PROBER] = Prober(config, session, app[_SOURCE], workers)
            task = asyncio.create_task(_probe_loop(app))
            yield
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", _health)
    app.router.add_get("/pairs", _pairs)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/nixl/source", _nixl_source)
    return app
