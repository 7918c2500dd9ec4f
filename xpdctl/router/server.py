"""Start the router on its listen address (from a command, or in-process for tests and benchmarks)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from xpdctl.aioserve import announce, run_until_signal, start_site
from xpdctl.router.app import ROUTER_KEY, Router, build_app
from xpdctl.router.config import RouterConfig


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


def serve(config: RouterConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main(stop: asyncio.Event) -> None:
        running = await start(config)
        announce("xpdctl router", config.listen.host, running.port)
        try:
            await stop.wait()
        finally:
            await running.stop()

    run_until_signal(main)
