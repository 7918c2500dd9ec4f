"""``xpdctl kv-agent`` argument and config errors (no NIXL needed to reach them)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _xpdctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xpdctl", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["kv-agent"], ["kv-agent", "probe"]])
def test_config_is_required(args):
    run = _xpdctl(*args)
    assert run.returncode == 2
    assert "--config FILE is required" in run.stderr


def test_invalid_config_names_the_file_and_field(tmp_path):
    path = tmp_path / "kv-agent.yaml"
    path.write_text("host: h\naddress: 10.0.0.1\nport: 0\n")
    run = _xpdctl("kv-agent", "probe", "--config", str(path))
    assert run.returncode == 2
    assert f"{path}: port: Input should be greater than or equal to 1" in run.stderr


def test_help_shows_the_api_and_examples():
    run = _xpdctl("kv-agent", "--help")
    assert run.returncode == 0
    assert "GET /pairs" in run.stdout and "xpdctl kv-agent probe --config" in run.stdout
