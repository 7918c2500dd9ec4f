"""The preflight playbook, run for real by ansible-runner against this machine (connection local).

It only reads, so it is safe here. No GPU or RDMA NIC exists on this machine: the hardware is
simulated at the lowest layer the role reads, a sysfs tree in a temporary folder (8 PCI functions
with NVIDIA's vendor ID and the H100 SXM device ID, 4 NVSwitch bridges, one ACTIVE mlx5_0 port),
passed as ``preflight_sysfs_root``. Both inventory hosts are this machine, so they see the same
8 GPUs; the second host's inventory entry declares 4 and must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.provision import preflight, render_now


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.fixture
def simulated_sysfs(tmp_path) -> Path:
    root = tmp_path / "sys"
    functions = [("0x2330", "0x030200")] * 8 + [("0x22a3", "0x068000")] * 4
    for index, (device, klass) in enumerate(functions):
        for name, value in (("vendor", "0x10de"), ("device", device), ("class", klass)):
            _write(root / "bus/pci/devices" / f"0000:{0x10 + index:02x}:00.0" / name, value)
    _write(root / "class/infiniband/mlx5_0/ports/1/state", "4: ACTIVE")
    return root


@pytest.fixture
def inventory(tmp_path, lab_data, write_inventory, monkeypatch):
    monkeypatch.setenv("XPDCTL_STATE_DIR", str(tmp_path / "state"))
    lab_data["hosts"][1] = {"name": "h100-02", "address": "10.0.0.12", "vendor": "nvidia",
                            "gpu": {"model": "H100-SXM", "count": 4}, "nics": ["mlx5_0"]}  # fmt: skip
    lab_data["pools"]["decode"] = {"hosts": ["h100-02"], "tensor_parallel": 4, "block_size": 128}
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    return write_inventory(lab_data)


def _extra_vars(sysfs: Path) -> dict:
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "preflight_os_allowed": ["debian 12", "ubuntu 22.04"],
        "preflight_sysfs_root": str(sysfs),
        "preflight_disk_images_gib": 1,
        "preflight_disk_model_gib": 1,
    }


def _check(host, name):
    return next(check for check in host.checks if check.name == name)


def test_preflight_catches_a_gpu_count_that_differs_from_the_inventory(inventory, simulated_sysfs):
    loaded = load_inventory(inventory)
    progress = []
    result = preflight(
        loaded, render_now(loaded, record=False), limit="h100-01,h100-02", extra_vars=_extra_vars(simulated_sysfs),
        on_progress=progress.append,
    )  # fmt: skip
    hosts = {h.host: h for h in result.hosts}
    assert sorted(hosts) == ["h100-01", "h100-02"]
    assert _check(hosts["h100-01"], "gpus").status == "ok"
    short = _check(hosts["h100-02"], "gpus")
    assert short.status == "fail" and "found 8 x nvidia (0x2330)" in short.detail and "4 x nvidia H100-SXM" in short.detail
    assert not hosts["h100-02"].ok and not result.ok
    for host in hosts.values():
        assert host.reachable
        assert _check(host, "os").status == "ok"
        assert _check(host, "nics").detail == "mlx5_0 up"
        assert _check(host, "disk").status == "ok"
    # The failing host stops in the role's last task, after handing over its report.
    assert any(p.host == "h100-02" and p.kind == "failed" and "gpus" not in p.task for p in progress)


def test_cli_prints_the_report_as_json_and_exits_1(inventory, simulated_sysfs, tmp_path):
    args = [sys.executable, "-m", "xpdctl", "preflight", "-i", str(inventory), "--limit", "h100-02", "-o", "json"]
    for key, value in _extra_vars(simulated_sysfs).items():
        args += ["-e", f"{key}={json.dumps(value)}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XPDCTL_STATE_DIR": str(tmp_path / "state")})  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    (host,) = report["hosts"]
    assert host["host"] == "h100-02" and host["ok"] is False
    assert {c["name"] for c in host["checks"]} == {"os", "kernel_headers", "gpus", "nics", "disk", "secure_boot", "ports"}
    assert "preflight failed on h100-02" in done.stderr
