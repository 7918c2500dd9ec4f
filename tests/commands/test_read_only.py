"""Commands that change nothing leave the cluster's state dir as it was (empty on a fresh machine):
`check`, `render -o DIR`, `plan`, `status`, `preflight`, `up --check`, `upgrade --dry-run`.

The hosts are unreachable on purpose: loopback addresses whose SSH port is closed (a port bound and
released, so nothing listens). That is the first run of an operator whose hosts are not up yet, and
no packet leaves this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(300)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable(lab_data, write_inventory):
    for i, host in enumerate(lab_data["hosts"], 1):
        host["address"] = f"127.0.0.{i}"
    lab_data["defaults"]["ssh"] = {"user": "nobody", "port": _closed_port()}
    return write_inventory(lab_data)


@pytest.fixture
def xpdctl(tmp_path):
    env = {**os.environ, "XPDCTL_STATE_DIR": str(tmp_path / "state"), "XPDCTL_SCRATCH_DIR": str(tmp_path / "scratch")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "xpdctl", *args], capture_output=True, text=True, env=env,
                              timeout=240)  # fmt: skip

    return run


def _untouched(tmp_path) -> list[str]:
    state = tmp_path / "state"
    return sorted(str(p.relative_to(state)) for p in state.rglob("*")) if state.exists() else []


def test_read_only_commands_write_no_state(xpdctl, unreachable, tmp_path):
    inv = str(unreachable)
    assert xpdctl("check", "-i", inv).returncode == 0
    assert xpdctl("render", "-i", inv, "-o", str(tmp_path / "out")).returncode == 0
    assert xpdctl("plan", "-i", inv, "--against", str(tmp_path / "out")).returncode == 0
    plan = xpdctl("plan", "-i", inv, "--timeout", "5")
    assert plan.returncode == 3 and "Connection refused" in plan.stderr
    status = xpdctl("status", "-i", inv)
    assert status.returncode == 3 and "Traceback" not in status.stderr
    assert xpdctl("status", "-i", "inventory/local.yaml").returncode == 0
    assert xpdctl("plan", "-i", "inventory/local.yaml").returncode == 1  # nothing deployed: every file is new

    preflight = xpdctl("preflight", "-i", inv)
    assert preflight.returncode == 1, preflight.stderr
    assert "Traceback" not in preflight.stderr
    rows = [line for line in preflight.stdout.splitlines()[1:] if line.strip()]
    # One row per host, its reason on that row.
    assert [row.split()[0] for row in rows] == ["gw-01", "h100-01", "mi300x-01"]
    assert all("FAIL" in row and "Connection refused" in row for row in rows)

    # `provision --check` takes the same path (render_now(record=False), provision(check=True)): one
    # Ansible run fewer in CI's budget.
    check = xpdctl("up", "-i", inv, "--check")
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    assert _untouched(tmp_path) == []

    # Nothing a read-only run did makes the cluster look deployed.
    dry = xpdctl("upgrade", "-i", inv, "--pool", "decode", "--dry-run")
    assert dry.returncode == 2 and "cluster lab is not deployed: no `xpdctl up` recorded it" in dry.stderr
    assert _untouched(tmp_path) == []
