import aiohttp
import pytest

from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start


@pytest.fixture
async def sims():
    """Start in-process simulators on loopback ephemeral ports; all are stopped after the test."""
    started = []

    async def make(role: str = "both", **overrides):
        options = {"model": "m", "port": 0, "ttft_ms": 5, "itl_ms": 1, **overrides}
        sim = await start(SimConfig(role=role, **options))
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session
