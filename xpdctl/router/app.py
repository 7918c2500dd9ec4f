"""The router application: wires config, backends, background monitors, proxy, admin API and metrics."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xpdctl.router import selection
from xpdctl.router.admin import AdminApi
from xpdctl.router.admission import Admission
from xpdctl.router.backends import Registry
from xpdctl.router.config import RouterConfig
from xpdctl.router.health import health_loop
from xpdctl.router.loadscrape import load_loop
from xpdctl.router.metrics import RouterMetrics
from xpdctl.router.pairs import pairs_loop
from xpdctl.router.proxy import Proxy


class Router:
    def __init__(self, config: RouterConfig):
        self.config = config
        self.registry = Registry(config.timeouts)
        for spec in config.backends:
            self.registry.add(spec)
        q = config.queue
        self.admission = Admission(q.max_in_flight, q.max_waiting, q.wait_timeout_s)
        self.metrics = RouterMetrics(self.registry, lambda: (self.admission.active, self.admission.waiting))
        self.proxy = Proxy(config, self.registry, self.admission, self.metrics)
        token = config.admin.resolved_token()
        self.admin = AdminApi(token, self.registry, config.health) if token else None
        self._tasks: list[asyncio.Task] = []

    async def start(self, app: web.Application) -> None:
        cfg = self.config
        self._tasks.append(asyncio.create_task(health_loop(self.registry, cfg.health)))
        self._tasks.append(asyncio.create_task(load_loop(self.registry, cfg.load_scrape_interval_s)))
        if cfg.kv_agents:
            self._tasks.append(asyncio.create_task(pairs_loop(self.registry, cfg.kv_agents, cfg.kv_agent_poll_interval_s)))

    async def stop(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(b.session.close() for b in self.registry))

    async def health(self, request: web.Request) -> web.Response:
        pairs = selection.usable_pairs(self.registry)
        decodes = sum(1 for d in self.registry.decodes if d.usable)
        ok = pairs > 0 or (self.config.conditional_disagg.enabled and decodes > 0)
        return web.json_response({"status": "ok" if ok else "unavailable", "usable_pairs": pairs}, status=200 if ok else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, request: web.Request) -> web.Response:
        if self.config.model:
            card = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "xpdctl", "root": self.config.model, "parent": None}
            return web.json_response({"object": "list", "data": [card]})
        # No model configured (quick form without --model): ask a decode what it serves.
        decode = selection.pick_decode(self.registry, None)
        if decode is None:
            return web.json_response({"error": "no healthy decode backend to ask for its models"}, status=503)
        try:
            async with decode.session.get(decode.url + "/v1/models", timeout=aiohttp.ClientTimeout(total=self.config.health.timeout_s)) as resp:
                return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return web.json_response({"error": f"decode {decode.url} did not list its models: {exc!r}"}, status=502)


ROUTER_KEY = web.AppKey("router", Router)


def build_app(config: RouterConfig) -> web.Application:
    # No middlewares: every request pays for each one, and the proxy path needs none.
    app = web.Application(client_max_size=256 * 1024 * 1024)
    router = app[ROUTER_KEY] = Router(config)
    app.router.add_post("/v1/completions", router.proxy.completions)
    app.router.add_post("/v1/chat/completions", router.proxy.chat)
    app.router.add_get("/v1/models", router.models)
    app.router.add_get("/health", router.health)
    app.router.add_get("/metrics", router.metrics_page)
    if router.admin is not None:
        app.router.add_routes(router.admin.routes())
    app.on_startup.append(router.start)
    app.on_cleanup.append(router.stop)
    return app
