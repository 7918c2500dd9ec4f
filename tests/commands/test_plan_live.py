"""`xpdctl plan` without --against: the diff between the plan and what the hosts hold.

The SSH form against real hosts is covered by tests/observe/test_observe_testhosts.py (live_tree over SSH to
network-namespace test hosts); here the command's own behaviour: the local-cluster form, and a host
that cannot be read (exit 3, its files left out rather than reported missing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.plan import build_plan
from xpdctl.render import render_files, write_tree

LOCAL = data_dir("inventory") / "local.yaml"


def _plan(*args, state_dir: Path):
    env = {**os.environ, "XPDCTL_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, "-m", "xpdctl", "plan", *args], capture_output=True, text=True, env=env)


def test_local_cluster_compares_with_its_last_render(tmp_path):
    rendered = tmp_path / "state" / "local" / "rendered"
    write_tree(render_files(build_plan(load_inventory(LOCAL), {})), rendered)

    same = _plan("-i", str(LOCAL), state_dir=tmp_path / "state")
    assert same.returncode == 0, same.stderr
    assert "no changes" in same.stderr

    router_yaml = rendered / "hosts" / "local" / "etc" / "xpdctl" / "router.yaml"
    router_yaml.write_text(router_yaml.read_text().replace("url: http://127.0.0.1:8200", "url: http://127.0.0.1:8201"))
    changed = _plan("-i", str(LOCAL), "-o", "json", state_dir=tmp_path / "state")
    assert changed.returncode == 1, changed.stderr
    data = json.loads(changed.stdout)
    assert [(f["path"], f["status"]) for f in data["files"]] == [
        ("hosts/local/etc/xpdctl/router.yaml", "changed")
    ]
    diff = data["files"][0]["diff"]
    assert "-- url: http://127.0.0.1:8201" in diff and "+- url: http://127.0.0.1:8200" in diff


def test_unreadable_host_is_left_out_and_exits_3(tmp_path, write_inventory):
    # Hosts with container runtime are reached over SSH even on loopback addresses; the SSH port has
    # nothing listening, so neither host can be read.
    with socket_port() as port:
        pass
    path = write_inventory(
        f"""
cluster: t
model: {{name: m, dtype: bfloat16, max_model_len: 2048}}
engine:
  vllm_version: "0.32.0"
  runtime: container
  server: sim
  xpdctl_image: "ghcr.io/xpdctl/xpdctl@sha256:{"0" * 64}"
kv: {{connector: nixl, buffer: cpu}}
defaults: {{ssh: {{user: root, port: {port}, key: {tmp_path}/nokey}}}}
hosts:
  - {{name: a, address: 127.0.0.2, vendor: cpu, gpu: {{model: cpu, count: 2}}}}
  - {{name: b, address: 127.0.0.3, vendor: cpu, gpu: {{model: cpu, count: 2}}}}
pools:
  prefill: {{hosts: [a], tensor_parallel: 1}}
  decode: {{hosts: [b], tensor_parallel: 1}}
router: {{hosts: [a], port: 8000, auth: {{mode: open}}}}
"""
    )
    result = _plan("-i", str(path), "--timeout", "10", "-o", "json", state_dir=tmp_path / "state")
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert set(data["unreachable"]) == {"a", "b"}
    assert data["files"] == []  # unknown, not "added"
    assert "could not read a:" in result.stderr


class socket_port:
    """A loopback TCP port that was free a moment ago (nothing listens on it afterwards)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._sock.close()
