"""`xpdctl upgrade` refusals that need no running cluster (the rollouts themselves: tests/upgrade)."""

import json
import subprocess
import sys


def _upgrade(tmp_path, *args):
    env = {"XPDCTL_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "xpdctl", "upgrade", *args], capture_output=True, text=True, env=env)


def test_cluster_never_brought_up(tmp_path):
    done = _upgrade(tmp_path, "-i", "inventory/local.yaml", "--pool", "decode")
    assert done.returncode == 2
    assert "is not deployed" in done.stderr and "xpdctl up" in done.stderr
    # A refused upgrade is in the audit log too: who tried what, and why it did not happen.
    [line] = [json.loads(x) for x in (tmp_path / "local" / "audit.jsonl").read_text().splitlines()]
    assert line["command"] == "upgrade" and line["result"] == "failed" and line["args"] == {"pool": "decode"}


def test_hosts_cluster_never_brought_up(tmp_path):
    done = _upgrade(tmp_path, "-i", "inventory/lab.yaml", "--pool", "decode")
    assert done.returncode == 2 and "is not deployed" in done.stderr and "xpdctl up" in done.stderr
    dry = _upgrade(tmp_path, "-i", "inventory/lab.yaml", "--pool", "decode", "--dry-run")
    assert dry.returncode == 2 and "is not deployed" in dry.stderr


def test_image_on_native_hosts_is_refused(tmp_path):
    done = _upgrade(tmp_path, "-i", "inventory/local.yaml", "--pool", "decode",
                    "--image", "vllm/vllm-openai:v0.32.0@sha256:" + "a" * 64, "--dry-run")
    assert done.returncode == 2 and "engine.python" in done.stderr


def test_help_teaches_the_steps():
    done = subprocess.run([sys.executable, "-m", "xpdctl", "upgrade", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for word in ("check-floor", "pull", "drain", "wait-idle", "warm-up", "pairs-ok", "undrain", "--resume",
                 "--blue-green", "Examples:"):
        assert word in done.stdout
