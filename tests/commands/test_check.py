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


def test_check_shows_the_vllm_level_interop_cell_for_recorded_stacks_with_different_nixl(tmp_path):
    """`up` records the engine stacks (xpdctl/identity/record.py); check prints each pair's factors. The
    prefill's stack is this venv's as the real probe reads it (nixl 1.5.1); the decode's is the same with
    nixl 1.5.0, a pair xpdctl/releases/nixl_interop.yaml holds (a second environment with another NIXL is
    what the soak tests build; here only its probe answer)."""
    import os

    import yaml

    from xpdctl.identity import read_identity
    from xpdctl.identity.record import record
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    data = yaml.safe_load(open("inventory/local.yaml").read())
    data["engine"]["python"] = sys.executable
    data["hosts"] = [{"name": "p", "address": "127.0.0.1", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}},
                     {"name": "d", "address": "127.0.0.2", "vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}}]
    data["pools"] = {"prefill": {"hosts": ["p"]}, "decode": {"hosts": ["d"]}}
    data["router"]["hosts"] = ["p"]
    inventory = tmp_path / "two.yaml"
    inventory.write_text(yaml.safe_dump(data))
    plan = build_plan(load_inventory(inventory), {})
    ours = read_identity([sys.executable])
    assert ours.nixl["nixl"].version == "1.5.1"
    older = ours.model_copy(deep=True)
    older.nixl["nixl"] = older.nixl["nixl"].model_copy(update={"version": "1.5.0"})
    record(plan, tmp_path / "state" / plan.cluster, read=lambda prefixes: {"p": ours, "d": older})
    done = subprocess.run([sys.executable, "-m", "xpdctl", "check", "-i", str(inventory)], capture_output=True,
                          text=True, env={**os.environ, "XPDCTL_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.strip().startswith("- nixl:")]
    assert "imports nixl (nixl 1.5.1) vs imports nixl (nixl 1.5.0): ok: nixl 1.5.1 -> nixl 1.5.0 measured to move KV " \
           "through vLLM 0.32.0's NIXL connector (vLLM level), 2026-12-02" in line, done.stdout
