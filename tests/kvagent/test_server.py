"""The agent's HTTP API and the one-shot probe on a single host, with real nixl in this process.

A same-host pair: the agent reads from its own NIXL source through a worker process, as the agent
of a one-machine cluster (inventory/local.yaml) does. Side channels are loopback listeners.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kvagent_helpers import agent_config, free_port, pair

from xpdctl.errors import UnhealthyError
from xpdctl.kvagent.config import KvAgentConfig
from xpdctl.kvagent.probe import probe_pairs, require_ok
from xpdctl.kvagent.server import build_app

SETTLE_TIMEOUT_S = 240


def _solo(pairs_side_channels: list[str]) -> KvAgentConfig:
    port = free_port()
    peer = f"http://127.0.0.1:{port}"
    pairs = [
        pair(f"prefill-{i}", f"decode-{i}", "solo", "solo", side, peer)
        for i, side in enumerate(pairs_side_channels)
    ]
    return KvAgentConfig.model_validate(agent_config("solo", port, pairs))


async def test_serving_agent_with_a_healthy_same_host_pair(side_channel):
    config = _solo([side_channel])
    async with TestClient(TestServer(build_app(config))) as client:
        for _ in range(SETTLE_TIMEOUT_S):
            pairs = (await (await client.get("/pairs")).json())["pairs"]
            if pairs and pairs[0]["verified"]:
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"no successful probe within {SETTLE_TIMEOUT_S} s: {pairs}")

        [result] = pairs
        assert result["ok"] is True and result["measured_by"] == "solo"
        assert result["transport"] in ("cma/memory", "tcp/lo")

        health = await client.get("/health")
        body = await health.json()
        assert health.status == 200
        assert (body["status"], body["pairs_ok"], body["pairs_total"]) == ("ok", 1, 1)

        source = await (await client.get("/nixl/source")).json()
        assert source["bulk"]["length"] == 8 * 1024 * 1024
        assert len(source["bulk"]["sha256"]) == 64 and base64.b64decode(source["metadata_b64"])

        metrics = await client.get("/metrics")
        text = await metrics.text()
        assert metrics.content_type == "text/plain"
        assert 'xpdctl_kvagent_pair_ok{decode="decode-0",prefill="prefill-0"} 1.0' in text
        assert 'xpdctl_kvagent_probes_total{peer_host="solo",result="ok"} 1.0' in text


def test_one_shot_probe_for_up_names_the_pair_with_a_dead_side_channel(side_channel, dead_side_channel):
    results = probe_pairs(_solo([side_channel, dead_side_channel]), wait_s=0)
    good, bad = results
    assert good.ok and good.verified and good.bandwidth_gbps > 0
    assert (bad.ok, bad.state, bad.side_channel_reachable) == (False, "broken", False)
    assert dead_side_channel in bad.reason
    with pytest.raises(UnhealthyError) as info:
        require_ok(results)
    assert len(info.value.details) == 1 and info.value.details[0].startswith("prefill-1 -> decode-1: broken:")
