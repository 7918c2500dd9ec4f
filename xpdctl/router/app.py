"""The router application: wires config, backends, background monitors, proxy, admin API and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xpdctl.router import reload, selection
from xpdctl.router.admin import AdminApi
from xpdctl.router.admission import Admission
from xpdctl.router.auth import KeyCollector, KeyGate, Refused
from xpdctl.router.backends import Registry
from xpdctl.router.config import RouterConfig
from xpdctl.router.health import check_all, health_loop
from xpdctl.router.loadscrape import load_loop
from xpdctl.router.metrics import RouterMetrics
from xpdctl.router.pairs import pairs_loop
from xpdctl.router.prefix import PrefixCollector, PrefixRouter
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
        self.keys = KeyGate(config.auth)
        self.metrics.registry.register(KeyCollector(self.keys))
        self.proxy = Proxy(config, self.registry, self.admission, self.metrics, self.keys)
        self._set_prefix(config)
        self.metrics.registry.register(PrefixCollector(lambda: self.proxy.prefix))
        self.admin = AdminApi(config.admin.resolved_token(), self.registry, config.health)
        self._loops: dict[str, asyncio.Task] = {}

    async def start(self, app: web.Application) -> None:
        # One round of health checks before the loops, and so before the site listens (on_startup runs
        # first): a backend is "unknown", and not used, until its first check, so a router that starts
        # beside another on the same port (a restart's handoff, deploy/handoff.py) would otherwise answer
        # its first requests 503. Bounded by the health timeout; backends that are down fail fast.
        await check_all(self.registry, self.config.health)
        await self._restart_loops(None)

    async def stop(self, app: web.Application) -> None:
        await self._cancel(list(self._loops))
        await self.registry.close()
        self.proxy.tracing.shutdown()  # sends the spans still batched

    async def apply(self, config: RouterConfig, admin_token: str | None) -> list[str]:
        """Run ``config`` from now on, keeping the runtime state of backends it keeps (a reload);
        returns what changed, in words. The listen address is the server's business (server.py)."""
        changes = await reload.reconcile_backends(self.registry, config.backends, config.health)
        changes += reload.changed_settings(self.config, config, self.admin.token != admin_token)
        self.registry.timeouts = config.timeouts
        q = config.queue
        self.admission.resize(q.max_in_flight, q.max_waiting, q.wait_timeout_s)
        self.proxy.configure(config)
        if config.prefix_routing != self.config.prefix_routing:
            self._set_prefix(config)
        self.keys.configure(config.auth)
        self.admin.configure(admin_token, config.health)
        old, self.config = self.config, config
        await self._restart_loops(old)
        return changes

    def _set_prefix(self, config: RouterConfig) -> None:
        tokenizer = config.prefix_routing.tokenizer
        self.proxy.prefix = PrefixRouter(config.prefix_routing, self.registry) if tokenizer else None

    def _loop_factories(self, cfg: RouterConfig) -> dict[str, tuple[object, Callable[[], Coroutine]]]:
        """Each background loop with the settings it was started from."""
        loops = {
            "health": (cfg.health, lambda: health_loop(self.registry, cfg.health)),
            "load": (cfg.load_scrape_interval_s, lambda: load_loop(self.registry, cfg.load_scrape_interval_s)),
        }
        if cfg.prefix_routing.tokenizer:
            loops["prefix"] = (cfg.prefix_routing, lambda: self.proxy.prefix.run())
        if cfg.kv_agents:
            pairs_settings = (cfg.kv_agents, cfg.kv_agent_poll_interval_s)
            loops["pairs"] = (pairs_settings, lambda: pairs_loop(self.registry, cfg.kv_agents, cfg.kv_agent_poll_interval_s))
        return loops

    async def _restart_loops(self, old: RouterConfig | None) -> None:
        """(Re)start the loops whose settings differ from ``old``'s (all of them at start)."""
        before = self._loop_factories(old) if old is not None else {}
        after = self._loop_factories(self.config)
        stale = [name for name in self._loops if name not in after or before.get(name, (None,))[0] != after[name][0]]
        await self._cancel(stale)
        if "pairs" in stale and "pairs" not in after:
            self.registry.broken_pairs = set()  # no agent left to report a pair broken
        for name, (_, loop) in after.items():
            if name not in self._loops:
                self._loops[name] = asyncio.create_task(loop())

    async def _cancel(self, names: list[str]) -> None:
        tasks = [self._loops.pop(name) for name in names]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def health(self, request: web.Request) -> web.Response:
        pairs = selection.usable_pairs(self.registry)
        decodes = sum(1 for d in self.registry.decodes if d.usable)
        ok = pairs > 0 or (self.config.conditional_disagg.enabled and decodes > 0)
        return web.json_response({"status": "ok" if ok else "unavailable", "usable_pairs": pairs}, status=200 if ok else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def models(self, request: web.Request) -> web.Response:
        try:
            self.keys.identify(request)
        except Refused as refused:
            return refused.response
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
    # Always routed: a reload may turn the admin API on; without a token it answers 404 and says why.
    app.router.add_routes(router.admin.routes())
    app.on_startup.append(router.start)
    app.on_cleanup.append(router.stop)
    return app
