"""HTTP probes against the real services, started in-process on loopback: simulator engines
(xpdctl.sim), the PD router (xpdctl.router) with its admin API, and a KV agent (xpdctl.kvagent)."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from xpdctl.aioserve import start_site
from xpdctl.kvagent.config import KvAgentConfig, Pair
from xpdctl.kvagent.server import build_app as build_kv_agent
from xpdctl.observe import http
from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim

TOKEN = "test-admin-token"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _until(probe, done, *, attempts: int = 300):
    """Probe until ``done(result)`` (background loops need a moment), at most ``attempts`` times."""
    for _ in range(attempts):
        result = await probe()
        if done(result):
            return result
        await asyncio.sleep(0.1)
    return result


@pytest.fixture
async def engines():
    running = [await start_sim(SimConfig(role=role, model="tiny", port=0)) for role in ("prefill", "decode")]
    yield running
    for sim in running:
        await sim.stop()


async def test_engine_metrics_models_and_missing_version(engines):
    prefill, _ = engines
    async with aiohttp.ClientSession() as session:
        engine = await http.probe_engine(session, service="p", role="prefill", url=prefill.url)
    assert engine.healthy and engine.error is None
    assert engine.models == ["tiny"]
    assert (engine.requests_running, engine.requests_waiting, engine.kv_cache_usage_pct) == (0, 0, 0)
    # The simulator has no /version (vLLM has): the field stays unknown rather than failing the probe.
    assert engine.vllm_version is None


async def test_router_backends_healthy_then_draining(engines):
    prefill, decode = engines
    config = RouterConfig.model_validate(
        {
            "listen": {"host": "127.0.0.1", "port": 1},  # start() below takes a free port instead
            "model": "tiny",
            "backends": [
                {"url": prefill.url, "pool": "prefill", "generation": "g1"},
                {"url": decode.url, "pool": "decode", "generation": "g1"},
            ],
            "health": {"interval_s": 0.1, "healthy_threshold": 1},
            "admin": {"token": TOKEN},
        }
    )
    router = await start_router(config, port=0)
    try:
        async with aiohttp.ClientSession() as session:
            status = await _until(
                lambda: http.probe_router(session, service="r", url=router.url, token=TOKEN),
                lambda s: s.healthy and s.backends and all(b.healthy for b in s.backends),
            )
            assert (status.usable_pairs, status.error, status.backends_error) == (1, None, None)
            assert [(b.pool, b.generation, b.state, b.healthy, b.draining) for b in status.backends] == [
                ("prefill", "g1", "healthy", True, False),
                ("decode", "g1", "healthy", True, False),
            ]
            async with session.post(
                f"{router.url}/admin/backends/drain",
                json={"url": decode.url},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp:
                assert resp.status == 200
            drained = await http.probe_router(session, service="r", url=router.url, token=TOKEN)
            assert [(b.state, b.healthy, b.draining) for b in drained.backends][1] == ("draining", True, True)
            # Its only decode drained, the router has no usable pair left and says so.
            assert drained.reachable and not drained.healthy and "HTTP 503" in drained.error
            wrong = await http.probe_router(session, service="r", url=router.url, token="wrong")
            assert wrong.reachable and wrong.backends == [] and "HTTP 401" in wrong.backends_error
            tokenless = await http.probe_router(session, service="r", url=router.url, token=None)
            assert tokenless.reachable and "no admin token" in tokenless.backends_error
    finally:
        await router.stop()


async def test_kv_agent_reports_a_pair_with_a_dead_side_channel():
    port = _closed_port()
    pair = Pair(
        prefill="xpd-t-prefill-0",
        decode="xpd-t-decode-0",
        # Measured here (the decode host); the prefill host's agent is not running either.
        prefill_host="there",
        decode_host="here",
        prefill_url="http://127.0.0.1:1",
        decode_url="http://127.0.0.1:2",
        side_channel=f"127.0.0.1:{port}",
        peer_agent=f"http://127.0.0.1:{_closed_port()}",
    )
    config = KvAgentConfig(
        host="here",
        address="127.0.0.1",
        listen_host="127.0.0.1",
        port=1,
        startup_grace_s=0,
        probe_size_mib=1,
        pairs=[pair],
    )
    runner, agent_port = await start_site(build_kv_agent(config), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{agent_port}"
            status = await _until(
                lambda: http.probe_kv_agent(session, service="a", url=url),
                lambda s: s.reachable and s.pairs and s.pairs[0].reason,
            )
    finally:
        await runner.cleanup()
    (reported,) = status.pairs
    assert (reported.prefill_url, reported.decode_url, reported.ok) == (
        "http://127.0.0.1:1",
        "http://127.0.0.1:2",
        False,
    )
    assert str(port) in reported.reason
    assert reported.measured_by == "here"
