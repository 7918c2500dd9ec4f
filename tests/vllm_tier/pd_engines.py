"""Real vLLM engines started straight from the command lines xpdctl renders, for the soak tests that need
engines the session's cluster does not have (another interpreter, another NIXL, another version string).

Each engine runs in its own session (process group), so its API server, engine core and workers are
killed together; ``running`` stops every one it started, also when a start fails.
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
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.conftest import REPO, VLLM_START_TIMEOUT_S, _wait_health

# The engines' start-up hook as shipped (templates/engine/sitecustomize.py needs no rendering): rendered
# units point PYTHONPATH at /etc/xpdctl/python, which these engines started by hand do not have. Used
# only where the plan renders it (``kv.nixl_progress_poll_ms`` above 0; docs/kv-agent.md).
HOOK_DIR = REPO / "templates" / "engine"


def two_host_inventory(path: Path, base: int, decode_version: str | None = None) -> Path:
    """inventory/local.yaml as a prefill host p (127.0.0.1) and a decode host d (127.0.0.2) of this machine,
    ports from ``base``, the test venv's interpreter; ``decode_version``: what d declares as its vLLM."""
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    data["engine"]["python"] = sys.executable
    decode = {"name": "d", "address": "127.0.0.2", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}}
    data["hosts"] = [{"name": "p", "address": "127.0.0.1", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}},
                     {**decode, **({"vllm_version": decode_version} if decode_version else {})}]
    # Prefix caching on, as in the vLLM tier's cluster; start the engines without its KV event publishers
    # (``without_flag``): they would all bind one port on this machine.
    data["pools"] = {"prefill": {"hosts": ["p"], "port": base}, "decode": {"hosts": ["d"], "port": base + 1}}
    data["kv"].update(hybrid_kv_cache_manager="on", agent_port=base + 3, side_channel_port=base + 4)
    data["router"] = {"hosts": ["p"], "port": base + 2, "listen": "127.0.0.1", "auth": {"mode": "open"}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "UCX_"))}


def engine_env(service, core: str, side_channel: int | None = None) -> dict:
    """``service``'s rendered environment on this machine, its OpenMP thread on ``core``."""
    env = {**clean_env(), **service.env, "VLLM_CPU_OMP_THREADS_BIND": core}
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = str(HOOK_DIR)
    if side_channel is not None:
        env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(side_channel)
    return env


def without_flag(args: list[str], flag: str) -> list[str]:
    args = list(args)
    i = args.index(flag)
    del args[i:i + 2]
    return args


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"raw": exc.read().decode(errors="replace")}


def pd(prefill: str, decode: str, model: str, prompt: str, max_tokens: int = 16) -> tuple[int, dict]:
    """One PD request the way the router sends it: the prefill keeps the KV, the decode pulls it."""
    from xpdctl.router.pdcontract import decode_request, kv_transfer_params, prefill_request

    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    status, first = post(prefill, prefill_request(body, chat=False))
    assert status == 200, first
    params = kv_transfer_params(first)
    assert params and params.get("remote_block_ids"), first  # the prefill kept KV for a remote decode
    return post(decode, decode_request(body, params))


@contextlib.contextmanager
def running(specs: dict[str, tuple[list[str], dict, str]], logs: Path) -> Iterator[dict[str, subprocess.Popen]]:
    """Start every ``name: (command, env, url)`` at once, wait until each answers /health, stop them all."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, (cmd, env, _) in specs.items():
            with open(logs / f"{name}.log", "w") as log:
                procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
        started = time.monotonic()
        for name, (_, _, url) in specs.items():
            _wait_health(url, procs[name], VLLM_START_TIMEOUT_S)
        print(f"{len(specs)} engines healthy after {time.monotonic() - started:.0f} s")
        yield procs
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
