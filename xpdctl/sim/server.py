"""Start a simulator: its HTTP site and, when configured apart, its NIXL side-channel site."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from xpdctl.aioserve import announce, bound_port, run_until_signal, start_site
from xpdctl.errors import XpdError
from xpdctl.sim.app import ENGINE_KEY, Engine, build_app
from xpdctl.sim.config import SimConfig


@dataclass
class RunningSim:
    runner: web.AppRunner
    port: int
    engine: Engine

    @property
    def kv_events(self) -> str | None:
        """Where its KV events are published (prefix caching with kv_events_port), else None."""
        return self.engine.publisher.endpoint if self.engine.publisher is not None else None

    @property
    def url(self) -> str:
        host = self.engine.config.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: SimConfig) -> RunningSim:
    app = build_app(config)
    engine = app[ENGINE_KEY]
    if engine.tokens is not None:
        await engine.tokens.load()
        if engine.tokens.state != "ready":
            raise XpdError(f"sim: prefix caching needs the model's tokenizer: {engine.tokens.why}")
    runner, port = await start_site(app, config.host, config.port)
    host = config.advertised_side_channel_host()
    if config.side_channel_port:
        # Every decode pull lands here at once under load: aiohttp's default backlog of 128 overflowed
        # at 256 streams and stalled pulls for 30 s, so it gets the main site's backlog.
        side = web.TCPSite(
            runner, config.side_channel_host or config.host, config.side_channel_port, backlog=4096, reuse_address=True
        )
        await side.start()
        engine.side_channel = (host, bound_port(side))
    else:
        engine.side_channel = (host, port)
    return RunningSim(runner, port, engine)


def serve(config: SimConfig) -> None:
    async def main(stop: asyncio.Event) -> None:
        sim = await start(config)
        announce(f"xpdctl sim ({config.role}, model {config.model})", config.host, sim.port)
        try:
            await stop.wait()
        finally:
            await sim.stop()

    run_until_signal(main)
