import json
import subprocess
import sys


def _check(*args):
    return subprocess.run([sys.executable, "-m", "xpdctl", "check", *args], capture_output=True, text=True)


def test_check_explains_every_pair():
    result = _check("-i", "inventory/lab.yaml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "inventory/lab.yaml: valid; cluster lab" in out
    assert "h100-01 (nvidia, TP8)  mi300x-01 (amd, TP8)  cpu        TRITON_ATTN (forced)  auto      pull" in out
    assert "h100-01 -> mi300x-01: why" in out
    assert "xpd-lab-decode-0   mi300x-01  0,1,2,3,4,5,6,7  8200  5600" in out
    assert "  - cross-vendor (nvidia -> amd): KV staged through host memory" in out


def test_check_json():
    result = _check("-i", "inventory/lab-single-vendor.yaml", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["cluster_settings"]["kv_buffer"] == "device"
    (pair,) = data["pairs"]
    assert pair["prefill"]["host"] == "mi300x-02" and pair["decode"]["vendor"] == "amd"
    assert pair["kv_buffer_device"] == {"prefill": "cuda", "decode": "cuda"}
    assert pair["ok"] is True and pair["why"]
    assert [(i["name"], i["host"], i["port"], i["side_channel_port"]) for i in data["instances"]] == [
        ("xpd-lab-single-prefill-0", "mi300x-02", 8100, 5600),
        ("xpd-lab-single-decode-0", "mi300x-01", 8200, 5600),
    ]
    assert len({i["generation"] for i in data["instances"]}) == 1


def test_check_json_of_an_invalid_inventory(write_inventory, lab_data):
    lab_data["model"]["kv_cache_dtype"] = "fp8"
    path = write_inventory(lab_data)
    result = _check("-i", str(path), "-o", "json")
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["valid"] is False
    (problem,) = data["problems"]
    assert problem.startswith(f"{path}:") and "model.kv_cache_dtype: fp8 KV cache across vendors" in problem
    assert problem in result.stderr
