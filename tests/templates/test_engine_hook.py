"""templates/engine/sitecustomize.py: the engines' start-up hook, run in a fresh interpreter with the real
nixl bindings (as an engine's interpreter runs it: its folder on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOOK_DIR = Path(__file__).resolve().parents[2] / "templates" / "engine"

# What vLLM's NixlConnector does (nixl_agent(name, nixl_agent_config(num_threads=4))), then what the
# agent's bindings saw: nixl_agent.__init__ hands nixlBind.nixlAgent a config with pthrDelay 0.
_CREATE_AGENT = """
import json
import nixl._api as api
seen = []
bindings = api.nixlBind
create = bindings.nixlAgent
def spy(name, config):
    agent = create(name, config)  # the hook's wrapper, if any, sets the delay on this very config
    seen.append({"prog_thread": config.useProgThread, "delay_us": config.pthrDelay})
    return agent
bindings.nixlAgent = spy
api.nixl_agent("hook-test", api.nixl_agent_config(num_threads=4))
api.nixl_agent("hook-test-no-thread", api.nixl_agent_config(enable_prog_thread=False))
print(json.dumps({"seen": seen, "patched": getattr(create, "xpd_poll_us", None)}))
"""


def _run(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XPD_NIXL_PROGRESS_POLL_US")}
    env.update({"PYTHONPATH": str(HOOK_DIR), **env_extra})
    out = subprocess.run([sys.executable, "-c", _CREATE_AGENT], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hook_gives_the_progress_thread_its_sleep():
    result = _run({"XPD_NIXL_PROGRESS_POLL_US": "100000"})
    assert result["patched"] == 100000
    assert result["seen"] == [
        {"prog_thread": True, "delay_us": 100000},
        # An agent without a progress thread is left as it is.
        {"prog_thread": False, "delay_us": 0},
    ]


@pytest.mark.parametrize("value", ["", "0", "not-a-number"])
def test_hook_leaves_nixl_alone_without_a_usable_setting(value):
    result = _run({"XPD_NIXL_PROGRESS_POLL_US": value})
    assert result["patched"] is None
    assert result["seen"][0] == {"prog_thread": True, "delay_us": 0}
