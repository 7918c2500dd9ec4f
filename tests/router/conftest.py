import asyncio
import contextlib
import socket

import aiohttp
import pytest

from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim


@pytest.fixture
async def cluster():
    """Build PD clusters in-process on loopback ephemeral ports: simulator engines and routers.

    ``sim(role, **options)`` starts a simulator; ``router(prefills, decodes, **config)`` starts a router
    over them (fast health checks) and waits until it has a usable pair. Everything stops after the test.
    """
    running = []

    class Cluster:
        async def sim(self, role="both", **overrides):
            options = {"model": "m", "port": 0, "ttft_ms": 5, "itl_ms": 1, **overrides}
            sim = await start_sim(SimConfig(role=role, **options))
            running.append(sim)
            return sim

        async def router(self, prefills=(), decodes=(), wait=True, backends=(), **config):
            backends = list(backends) or (
                [{"url": s.url, "pool": "prefill"} for s in prefills] + [{"url": s.url, "pool": "decode"} for s in decodes])
            document = {"model": "m", "backends": backends, "health": {"interval_s": 0.05, "timeout_s": 5.0},
                        "load_scrape_interval_s": 0.05, **config}
            router = await start_router(RouterConfig.model_validate(document), port=0)
            running.append(router)
            if wait:
                await until(lambda: all(b.health == "healthy" for b in router.router.registry))
            return router

    yield Cluster()
    for item in reversed(running):
        await item.stop()


async def until(condition, timeout_s: float = 10.0):
    """Poll ``condition`` (bounded); fail the test if it never holds."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.fixture
def wait_until():
    return until


@pytest.fixture
async def kv_agent():
    """``kv_agent(report) -> url``: a stand-in KV agent serving the /pairs contract with ``report``
    (a dict the test may change later). Stopped after the test."""
    from aiohttp import web

    from xpdctl.aioserve import start_site

    runners = []

    async def serve(report: dict) -> str:
        agent = web.Application()

        async def pairs(request):
            return web.json_response(report)

        agent.router.add_get("/pairs", pairs)
        runner, port = await start_site(agent, "127.0.0.1", 0)
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@contextlib.asynccontextmanager
async def _unanswered(port: int):
    """A listener on ``port`` (of a stopped engine) whose accept queue is full, as on a host too loaded to
    accept: loopback drops further SYNs, so a connect to it times out (aiohttp's ConnectionTimeoutError)."""
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind(("127.0.0.1", port))
    hung.listen(0)
    fillers = []
    try:
        for _ in range(3):  # never accepted: they fill the accept queue
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.1)
        yield
    finally:
        for s in [*fillers, hung]:
            s.close()


@pytest.fixture
def unanswered():
    """``async with unanswered(port):`` connects to ``port`` time out meanwhile."""
    return _unanswered
