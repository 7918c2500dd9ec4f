"""Simulated heterogeneous clusters for bench tests: simulator engines timed by the performance model's
H100/MI300X profiles (xpdctl sim --profile) behind our router, all on loopback.

No GPU exists here: each engine is xpdctl's simulator, the lowest layer that can stand in for one,
with the prefill/decode timing of the hardware profile scaled down (time_scale) so a grid takes seconds.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import yaml

from xpdctl.paths import data_dir
from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim

TIME_SCALE = 0.2


class _Loop:
    """An event loop in a background thread, so the CLI under test can run its own asyncio.run()."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _until_healthy(router, timeout_s: float = 20.0):
    for _ in range(int(timeout_s / 0.05)):
        if all(b.health == "healthy" for b in router.router.registry):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("router backends never became healthy")


async def _pd_cluster(model: str, prefill_profile: str, decode_profile: str, kv_path: str, router_host: str, running: list):
    common = {"model": model, "port": 0, "time_scale": TIME_SCALE, "max_model_len": 16640}
    prefill = await start_sim(SimConfig(role="prefill", profile=prefill_profile, **common))
    decode = await start_sim(SimConfig(role="decode", profile=decode_profile, kv_path=kv_path, **common))
    running += [prefill, decode]
    config = RouterConfig.model_validate({
        "model": model, "listen": {"host": router_host},
        "backends": [{"url": prefill.url, "pool": "prefill"}, {"url": decode.url, "pool": "decode"}],
        "health": {"interval_s": 0.1, "timeout_s": 5.0}, "load_scrape_interval_s": 0.1})
    router = await start_router(config, port=0)
    running.append(router)
    await _until_healthy(router)
    return router


def _inventory(tmp: Path, name: str, first_address: int) -> tuple[Path, str, dict]:
    """A shipped lab inventory with its hosts moved to loopback addresses of their own (127.0.0.N: the
    inventory rules want distinct addresses); returns (path, router address, data) for the router port."""
    data = yaml.safe_load((data_dir("inventory") / name).read_text())
    for i, host in enumerate(data["hosts"]):
        host["address"] = f"127.0.0.{first_address + i}"
    router = next(h["address"] for h in data["hosts"] if h["name"] == data["router"]["host"])
    return tmp / name, router, data


def _write(path: Path, data: dict, port: int) -> Path:
    data["router"]["port"] = port
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sim_clusters(tmp_path_factory):
    """(cross inventory, single inventory): lab.yaml's H100 prefill -> MI300X decode with KV through host
    memory, and lab-single-vendor.yaml's MI300X -> MI300X over the device path, each a simulated pair
    behind a real router whose address the inventory names."""
    tmp = tmp_path_factory.mktemp("sim-clusters")
    loop = _Loop()
    running: list = []
    model = "openai/gpt-oss-120b"  # the lab inventories' model name: the simulators serve it
    try:
        cross_path, cross_host, cross_data = _inventory(tmp, "lab.yaml", 11)
        single_path, single_host, single_data = _inventory(tmp, "lab-single-vendor.yaml", 31)
        cross = loop.run(_pd_cluster(model, "H100-SXM", "MI300X", "host", cross_host, running))
        single = loop.run(_pd_cluster(model, "MI300X", "MI300X", "device", single_host, running))
        yield _write(cross_path, cross_data, cross.port), _write(single_path, single_data, single.port)
    finally:
        for item in reversed(running):
            loop.run(item.stop())
        loop.close()


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tiny GPT-OSS model's byte-level BPE tokenizer (built locally, as `xpdctl up` builds it)."""
    from transformers import AutoTokenizer

    from xpdctl.models.tiny_gpt_oss import build

    folder = tmp_path_factory.mktemp("tiny-model")
    build(folder)
    return AutoTokenizer.from_pretrained(str(folder)), folder
