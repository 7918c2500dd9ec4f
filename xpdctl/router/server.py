"""Start the router on its listen address (from a command, or in-process for tests and benchmarks)."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass

from aiohttp import web

from xpdctl.aioserve import announce, run_until_signal, start_site
from xpdctl.router.app import ROUTER_KEY, Router, build_app
from xpdctl.router.config import RouterConfig

# Allocations between young-generation collections (Python's default: 700). See quiet_gc.
GC_THRESHOLD = 20_000


@dataclass
class RunningRouter:
    runner: web.AppRunner
    port: int
    router: Router

    @property
    def url(self) -> str:
        host = self.router.config.listen.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: RouterConfig, port: int | None = None) -> RunningRouter:
    """``port`` overrides the configured one; 0 takes any free port (tests)."""
    app = build_app(config)
    runner, port = await start_site(app, config.listen.host, config.listen.port if port is None else port)
    return RunningRouter(runner, port, app[ROUTER_KEY])


def quiet_gc() -> None:
    """Keep the cyclic garbage collector off the streaming path.

    Measured at 256 streams (benchmarks/router_bench.py, 2,560 requests): with Python's defaults the
    collector ran ~240 times, and its full collections walked the ~51,000 objects the imports leave
    behind (aiohttp, pydantic, prometheus-client) besides every in-flight stream: 44 ms of CPU in one
    pause. A served request leaves no reference cycles (checked with gc.DEBUG_SAVEALL), so a bigger
    young generation loses nothing; frozen startup objects are never walked again. With both, a
    handful of small collections ran in the same load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def serve(config: RouterConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main(stop: asyncio.Event) -> None:
        running = await start(config)
        quiet_gc()
        announce("xpdctl router", config.listen.host, running.port)
        try:
            await stop.wait()
        finally:
            await running.stop()

    run_until_signal(main)
