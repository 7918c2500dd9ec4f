"""Start the router on its listen address (from a command, or in-process for tests and benchmarks)."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from xpdctl.aioserve import announce, run_until_signal, start_site
from xpdctl.router import reload
from xpdctl.router.app import ROUTER_KEY, Router, build_app
from xpdctl.router.config import RouterConfig
from xpdctl.router.tls import server_context

log = logging.getLogger(__name__)

# Allocations between young-generation collections (Python's default: 700). See quiet_gc.
GC_THRESHOLD = 20_000


@dataclass
class RunningRouter:
    runner: web.AppRunner
    port: int
    router: Router
    # The command line's --port (0 in tests: any free port): it overrides the file's at every reload.
    port_override: int | None = None
    tls: ssl.SSLContext | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def url(self) -> str:
        host = self.router.config.listen.host
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: RouterConfig, port: int | None = None) -> RunningRouter:
    """``port`` overrides the configured one; 0 takes any free port (tests)."""
    if port is not None:
        config = config.model_copy(update={"listen": config.listen.model_copy(update={"port": port})})
    tls = server_context(config.tls)
    app = build_app(config)
    runner, bound = await start_site(app, config.listen.host, config.listen.port, tls)
    return RunningRouter(runner, bound, app[ROUTER_KEY], port, tls)


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


def serve(config: RouterConfig, port: int | None = None, path: Path | None = None, sha256: str = "") -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads ``path``, the file ``config`` was read from (its bytes' ``sha256``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running: RunningRouter | None = None
    reloads: set[asyncio.Task] = set()

    def on_reload() -> None:
        if path is None:
            log.info("SIGHUP ignored: the router was started from flags, without a --config file to reload")
        elif running is None:
            log.warning("SIGHUP ignored: the router is still starting; send it again once it listens")
        else:
            task = asyncio.create_task(reload.reload_file(running, path))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    async def main(stop: asyncio.Event) -> None:
        nonlocal running
        running = await start(config, port)
        if path is not None:
            running.router.metrics.config_file.info({"path": str(path), "sha256": sha256})
        quiet_gc()
        announce("xpdctl router", config.listen.host, running.port)
        try:
            await stop.wait()
        finally:
            for task in reloads:
                task.cancel()
            await running.stop()

    run_until_signal(main, on_reload)
