"""benchmarks/vllm_engines.py's plan of more engines than cores: what xpdctl's own validation and plan
make of it, without starting vLLM (the benchmarks that start them are heavy; see DEVELOPERS.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import vllm_engines  # noqa: E402

from xpdctl.inventory import load_inventory  # noqa: E402
from xpdctl.plan import build_plan  # noqa: E402


@pytest.mark.parametrize(("prefills", "decodes"), [(2, 1), (1, 2)])
def test_the_engines_inventory_validates_and_gives_every_engine_its_own_ports(tmp_path, prefills, decodes):
    plan = build_plan(load_inventory(vllm_engines._inventory(prefills, decodes, tmp_path, ["--enable-log-requests"], {})),
                      os.environ)
    engines = [s for s in plan.services() if s.role in ("prefill", "decode")]
    assert [s.role for s in engines] == ["prefill"] * prefills + ["decode"] * decodes
    ports = [s.details["url"] for s in engines] + [s.details["kv_events"] for s in engines]
    ports += [s.env["VLLM_NIXL_SIDE_CHANNEL_PORT"] for s in engines]
    assert len(set(ports)) == len(ports)
    assert all("--enable-prefix-caching" in s.command and "--kv-events-config" in s.command for s in engines)
    assert all(("--enable-log-requests" in s.command) == (s.role == "decode") for s in engines)
    router = next(h.router_config for h in plan.hosts.values() if h.router_config is not None)
    assert [b.url for b in router.backends] == [s.details["url"] for s in engines]
    assert router.prefix_routing.tokenizer


def test_kv_settings_given_to_the_engines_reach_their_plan(tmp_path):
    """benchmarks/pd_diagnose.py --kv: e.g. NIXL's progress-thread hook off, or the hybrid KV cache manager."""
    kv = {"nixl_progress_poll_ms": 100, "hybrid_kv_cache_manager": "off"}
    plan = build_plan(load_inventory(vllm_engines._inventory(2, 1, tmp_path, [], kv)), os.environ)
    engines = [s for s in plan.services() if s.role in ("prefill", "decode")]
    assert all(s.env.get("XPD_NIXL_PROGRESS_POLL_US") == "100000" and "--disable-hybrid-kv-cache-manager" in s.command
               for s in engines)
    default = build_plan(load_inventory(vllm_engines._inventory(2, 1, tmp_path, [], {})), os.environ)
    assert not any("XPD_NIXL_PROGRESS_POLL_US" in s.env for s in default.services())


def test_an_unset_option_takes_the_engines_kind_default_and_a_given_one_wins():
    import argparse

    defaults = {"sim": {"requests": 512}, "vllm": {"requests": 24}}

    def parse(*argv):
        ap = argparse.ArgumentParser()
        ap.add_argument("--requests", type=int)
        return vllm_engines.parse_args(ap, list(argv), defaults)

    assert parse().requests == 512
    assert parse("--engines", "vllm").requests == 24
    assert parse("--engines", "vllm", "--requests", "3").requests == 3


async def test_warm_up_sends_one_pd_request_through_every_pair(tmp_path):
    """On simulated engines (the PD contract is the same; vLLM does not run in this tier)."""
    import asyncio

    import children
    from xpdctl.sim.config import SimConfig
    from xpdctl.sim.server import start as start_sim

    sims = [await start_sim(SimConfig(role=role, model="m", port=0)) for role in ("prefill", "prefill", "decode")]
    try:
        # No process behind them: warm_up only talks HTTP (and names the decode's log when it gives up).
        engines = [vllm_engines.Engine(f"e{i}", s.engine.config.role, s.url, children.Service(f"e{i}", s.url, None, tmp_path))
                   for i, s in enumerate(sims)]
        await asyncio.to_thread(vllm_engines.warm_up, vllm_engines.Cluster(engines, {}, "m", tmp_path))
        assert [len(s.engine.log) for s in sims] == [1, 1, 2]
    finally:
        for s in sims:
            await s.stop()
