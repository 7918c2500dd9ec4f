"""Helpers of the deploy tests: `xpdctl` run as a person runs it, against test hosts.

Fleets here: "dplv" on 10.88.61.0/24 (real vLLM); the simulator-engine tests use the shared serving
fleet ("dpl" on 10.88.60.0/24, tests/served_fleet.py) and the fleet with keys, firewall and two routers
("door" on 10.88.63.0/24, tests/doors_fleet.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path


from xpdctl.testhosts import fleet
from xpdctl.testhosts.layout import fleet_dirs

# One `up` provisions every host and waits for every stage; a loaded machine makes it slow.
COMMAND_TIMEOUT_S = 2400


def xpdctl_runner(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """xpdctl(*args) -> the finished `python -m xpdctl ARGS` (never raises on its exit status)."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "xpdctl", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)  # fmt: skip

    return run


def ssh(fleet_name: str, address: str, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` on a test host over real SSH (the modules with fleets of their own)."""
    argv = [*fleet.ssh_argv(fleet_name, address)]
    argv[-1:-1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    return subprocess.run([*argv, command], capture_output=True, text=True, timeout=120)


def state_env(tmp: Path) -> dict[str, str]:
    return dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"))


def key_of(fleet_name: str) -> Path:
    return fleet_dirs(fleet_name).key


def complete(base_url: str, model: str, prompt: str, *, max_tokens: int = 24, timeout_s: float = 600) -> dict:
    """One greedy completion; the parsed answer."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    request = urllib.request.Request(f"{base_url}/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def metric_sum(base_url: str, name: str) -> float:
    """The sum over every label set of one Prometheus sample name on ``base_url/metrics``."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "))  # fmt: skip
