"""Every KV-compatibility decision and refusal (docs/kv-handshake.md)."""

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.inventory.kvcompat import generation, generation_factors
from xpdctl.vendors import vendor_profiles


@pytest.fixture
def decide(write_inventory):
    def run(data):
        return load_inventory(write_inventory(data)).kv

    return run


@pytest.fixture
def refusals(write_inventory):
    def run(data) -> list[str]:
        with pytest.raises(InputError) as info:
            load_inventory(write_inventory(data))
        return [line.split(": ", 2)[1] + ": " + line.split(": ", 2)[2] for line in info.value.details]

    return run


def _mi300x(name="mi300x-02", address="10.0.0.22"):
    return {"name": name, "address": address, "vendor": "amd", "gpu": {"model": "MI300X", "count": 8}, "nics": ["mlx5_0"]}


def _all_amd(data):
    """lab.yaml with its H100 prefill host swapped for a second MI300X: the single-vendor shape."""
    data["hosts"][0] = _mi300x()
    data["pools"]["prefill"]["hosts"] = ["mi300x-02"]


def test_cross_vendor_stages_through_host_memory_with_one_forced_backend():
    kv = load_inventory("inventory/lab.yaml").kv
    assert kv.settings.buffer == "cpu"
    assert kv.settings.forced_backend == "TRITON_ATTN"
    (pair,) = kv.pairs
    assert (pair.prefill.host, pair.decode.host, pair.cross_vendor) == ("h100-01", "mi300x-01", True)
    assert pair.kv_buffer_device == {"prefill": "cpu", "decode": "cpu"}
    assert (pair.attention_backend, pair.backend_forced) == ("TRITON_ATTN", True)
    assert (pair.kv_cache_dtype, pair.transfer_mode, pair.ok) == ("auto", "pull", True)
    assert pair.reasons[0] == "cross-vendor (nvidia -> amd): KV staged through host memory, kv_buffer_device cpu on both sides"
    assert any("vendor defaults differ (amd TRITON_ATTN, nvidia FLASH_ATTN)" in r for r in kv.settings.reasons)


def test_same_vendor_uses_the_device_buffer_and_the_vendor_default_backend():
    kv = load_inventory("inventory/lab-single-vendor.yaml").kv
    (pair,) = kv.pairs
    assert not pair.cross_vendor
    assert pair.kv_buffer_device == {"prefill": "cuda", "decode": "cuda"}  # ROCm reports "cuda"
    assert (pair.attention_backend, pair.backend_forced) == ("TRITON_ATTN", False)
    assert "GPUDirect RDMA" in pair.reasons[0]


def test_cpu_devices_keep_kv_in_host_memory():
    (pair,) = load_inventory("inventory/local.yaml").kv.pairs
    assert pair.kv_buffer_device == {"prefill": "cpu", "decode": "cpu"}
    assert pair.attention_backend == "CPU_ATTN"
    assert "in host memory (cpu devices)" in pair.reasons[0]


def test_device_buffer_across_vendors_is_refused(refusals, lab_data):
    lab_data["kv"]["buffer"] = "device"
    (found,) = refusals(lab_data)
    assert found == ("kv.buffer: device memory cannot carry KV across vendors (pair h100-01 -> mi300x-01: "
                     "h100-01 nvidia imports nixl (nixl 1.5.1); mi300x-01 amd imports rixl (RIXL f33a5599)); "
                     "use buffer: cpu or auto")


def test_host_buffer_may_be_chosen_within_one_vendor(decide, lab_data):
    _all_amd(lab_data)
    lab_data["kv"]["buffer"] = "cpu"
    kv = decide(lab_data)
    assert kv.pairs[0].kv_buffer_device == {"prefill": "cpu", "decode": "cpu"}
    assert "kv buffer cpu: set in the inventory" in kv.settings.reasons


def test_forced_backend_must_run_on_every_vendor(refusals, lab_data):
    lab_data["kv"]["attention_backend"] = "FLASH_ATTN"
    (found,) = refusals(lab_data)
    assert found.startswith("kv.attention_backend: FLASH_ATTN is not known to run on amd "
                            "(known: TRITON_ATTN, ROCM_AITER_FA, ROCM_ATTN)")


def test_forced_backend_applies_within_one_vendor_too(decide, lab_data):
    _all_amd(lab_data)
    lab_data["kv"]["attention_backend"] = "ROCM_AITER_FA"
    (pair,) = decide(lab_data).pairs
    assert (pair.attention_backend, pair.backend_forced) == ("ROCM_AITER_FA", True)


def test_no_common_backend_is_refused(refusals, lab_data):
    lab_data["hosts"][1]["vendor"] = "cpu"
    lab_data["engine"]["images"]["cpu"] = "x/vllm-cpu@sha256:1"
    found = refusals(lab_data)
    assert any(f.startswith("kv.attention_backend: no attention backend runs on all of cpu, nvidia "
                            "(cpu CPU_ATTN, nvidia FLASH_ATTN)") for f in found)


def test_fp8_kv_cache_across_vendors_is_refused_with_the_reason(refusals, lab_data):
    lab_data["model"]["kv_cache_dtype"] = "fp8"
    (found,) = refusals(lab_data)
    assert found == ("model.kv_cache_dtype: fp8 KV cache across vendors (h100-01 nvidia: e4m3fn, mi300x-01 amd: "
                     "e4m3fnuz): the handshake compares only the name 'fp8', so decode would read wrong values "
                     "and answer with HTTP 200; use kv_cache_dtype: auto")


def test_fp8_kv_cache_within_one_vendor_is_allowed(decide, lab_data):
    _all_amd(lab_data)
    lab_data["model"]["kv_cache_dtype"] = "fp8_e4m3"
    (pair,) = decide(lab_data).pairs
    assert pair.ok and pair.kv_cache_dtype == "fp8_e4m3"


def test_different_vllm_versions_are_refused(refusals, lab_data):
    lab_data["hosts"][1]["vllm_version"] = "0.32.0"  # a release the table knows
    (found,) = refusals(lab_data)
    assert found.startswith("hosts[1].vllm_version: h100-01 runs vLLM 0.15.0 and mi300x-01 0.32.0: the NIXL "
                            "handshake refuses different versions")


def test_a_release_missing_from_the_table_is_refused_with_what_to_add(refusals, lab_data):
    lab_data["engine"]["vllm_version"] = "0.16.0"
    lab_data["hosts"][1].pop("vllm_version")
    (found,) = refusals(lab_data)  # one release missing: one error
    assert found.startswith("engine.vllm_version: vLLM 0.16.0 is not in xpdctl's release table (known: 0.15.0, "
                            "0.26.0, 0.32.0); run `pip download vllm==0.16.0 --no-deps`")


def test_check_names_the_nixl_module_each_side_imports():
    (pair,) = load_inventory("inventory/lab.yaml").kv.pairs
    assert (pair.prefill.nixl.module, pair.decode.nixl.module) == ("nixl", "rixl")
    assert ("NIXL: h100-01 imports nixl (nixl 1.5.1), mi300x-01 imports rixl (RIXL f33a5599) (vllm 0.15.0 "
            "vllm/distributed/kv_transfer/kv_connector/v1/nixl_connector.py:108,111)") in pair.reasons


def test_builds_never_measured_together_are_a_warning_saying_why():
    """lab.yaml: upstream nixl on the H100, RIXL on the MI300X. RIXL has no PyPI wheel, so the interop table
    (xpdctl/releases/nixl_interop.yaml) can hold no cell for the pair: allowed, with a warning that says why."""
    loaded = load_inventory("inventory/lab.yaml")
    (pair,) = loaded.kv.pairs
    assert pair.ok
    (warning,) = [w for w in loaded.warnings if "NIXL" in w]
    assert warning.startswith("inventory/lab.yaml:29: hosts[1].vllm_version: h100-01 -> mi300x-01: nixl 1.5.1 -> "
                              "RIXL f33a5599 not measured: NIXL's ROCm builds have no PyPI wheel")
    assert any(r.startswith("NIXL builds differ: nixl 1.5.1 -> RIXL f33a5599 not measured") for r in pair.reasons)


def test_a_sliding_window_model_is_warned_of_vllms_freed_window_block_unless_the_manager_is_off(write_inventory):
    """vLLM 0.32's prefill frees a block the decode still reads for one prompt length in every block
    (docs/kv-handshake.md, measured with benchmarks/pd_diagnose.py): inventory/local.yaml (tiny GPT-OSS,
    hybrid, manager auto) is warned; with the manager off, or a model without sliding windows, it is not."""
    import yaml

    loaded = load_inventory("inventory/local.yaml")
    (warning,) = [w for w in loaded.warnings if "sliding-window block" in w]
    assert "kv.hybrid_kv_cache_manager" in warning
    assert "vllm 0.32.0 vllm/v1/core/sched/scheduler.py:3025" in warning
    data = yaml.safe_load(open("inventory/local.yaml"))
    data["engine"]["python"] = "/usr/bin/python3"  # the copy lives elsewhere; its path is not what is tested
    for change in ({"kv": {**data["kv"], "hybrid_kv_cache_manager": "off"}},
                   {"model": {**data["model"], "hybrid": False}}):
        assert not [w for w in load_inventory(write_inventory({**data, **change})).warnings
                    if "sliding-window block" in w]


def test_builds_measured_broken_are_refused(refusals, lab_data, monkeypatch):
    """A cell measured broken (a table written here: none of the shipped cells is broken) refuses the pair."""
    from xpdctl.inventory import kvcompat
    from xpdctl.releases import Interop

    broken = Interop.model_validate({
        "runs": {"pd": {"level": "vLLM", "vllm": "0.15.0", "date": "2026-12-02", "command": "pytest ..."}},
        "measured": [{"run": "pd", "source": "nixl 1.5.1", "reader": "RIXL f33a5599", "result": "broken",
                      "how": "the decode answered HTTP 500"}],
    })
    monkeypatch.setattr(kvcompat, "nixl_interop", lambda: broken)
    (found,) = refusals(lab_data)
    assert found == ("hosts[1].vllm_version: h100-01 -> mi300x-01: nixl 1.5.1 -> RIXL f33a5599 was measured not "
                     "to move KV at the vLLM level (2026-12-02: the decode answered HTTP 500) "
                     "(xpdctl/releases/nixl_interop.yaml); install one build on both sides")


def test_the_simulator_needs_no_release_entry(decide, lab_data):
    lab_data["engine"].update(server="sim", vllm_version="9.9.9")
    lab_data["hosts"][1].pop("vllm_version")
    (pair,) = decide(lab_data).pairs
    assert pair.ok and "NIXL: simulator engines, no NIXL handshake" in pair.reasons


def test_decode_tp_below_prefill_tp_is_refused_even_within_one_vendor(refusals, lab_data):
    _all_amd(lab_data)
    lab_data["pools"]["decode"]["tensor_parallel"] = 4
    (found,) = refusals(lab_data)
    assert found.startswith("pools.decode.tensor_parallel: decode TP 4 on mi300x-01 is below prefill TP 8 on "
                            "mi300x-02; vLLM requires decode TP >= prefill TP")


def test_larger_decode_tp_is_fine_within_one_vendor(decide, lab_data):
    _all_amd(lab_data)
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    pairs = decide(lab_data).pairs
    assert len(pairs) == 1 and pairs[0].ok  # one pair per host pair, whatever the instance count
    assert "TP 4 -> 8" in pairs[0].reasons


def test_different_tp_across_vendors_is_refused_unless_allowed(refusals, decide, lab_data):
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    found = refusals(lab_data)
    assert found[0].startswith("pools.decode.tensor_parallel: TP 4 (h100-01) -> 8 (mi300x-01) across vendors: no "
                               "attention backend is known to handle different TP on both")
    lab_data["kv"]["allow_cross_vendor_tp_mismatch"] = True
    assert all(p.ok for p in decide(lab_data).pairs)


def test_equal_block_sizes_pass(decide, lab_data):
    assert "block size 128 on both" in decide(lab_data).pairs[0].reasons


def test_smaller_prefill_block_size_passes_for_non_hybrid_models(decide, lab_data):
    lab_data["model"]["hybrid"] = False
    lab_data["pools"]["prefill"]["block_size"] = 64
    (pair,) = decide(lab_data).pairs
    assert "block size 64 -> 128: prefill's is smaller and the model is not hybrid" in pair.reasons


def test_different_block_sizes_are_refused_for_hybrid_models(refusals, lab_data):
    lab_data["pools"]["prefill"]["block_size"] = 64
    (found,) = refusals(lab_data)
    assert found.startswith("pools.prefill.block_size: block sizes differ (h100-01 64, mi300x-01 128) and the model "
                            "is hybrid (sliding-window and full attention)")


def test_larger_prefill_block_size_is_refused(refusals, lab_data):
    lab_data["model"]["hybrid"] = False
    lab_data["pools"]["decode"]["block_size"] = 64
    (found,) = refusals(lab_data)
    assert "and prefill's must be the smaller" in found


def test_block_size_defaults_come_from_the_vendor_profile(decide, lab_data):
    del lab_data["pools"]["prefill"]["block_size"]
    del lab_data["pools"]["decode"]["block_size"]
    (pair,) = decide(lab_data).pairs
    assert (pair.prefill.block_size, pair.decode.block_size) == (16, 16)


def test_one_cross_vendor_pair_sets_the_path_for_the_whole_cluster(decide, lab_data):
    # The router may pair any prefill with any decode, so an amd->amd pair in a mixed cluster also
    # stages through host memory and uses the common backend.
    lab_data["hosts"].append(_mi300x())
    lab_data["pools"]["prefill"]["hosts"].append("mi300x-02")
    kv = decide(lab_data)
    assert [(p.prefill.host, p.cross_vendor) for p in kv.pairs] == [("h100-01", True), ("mi300x-02", False)]
    assert all(p.kv_buffer_device == {"prefill": "cpu", "decode": "cpu"} for p in kv.pairs)
    assert {p.attention_backend for p in kv.pairs} == {"TRITON_ATTN"}


def test_generation_is_equal_for_equal_factors_and_differs_with_any_factor():
    loaded = load_inventory("inventory/lab.yaml")
    inv, settings = loaded.inventory, loaded.kv.settings
    nvidia, amd = vendor_profiles()["nvidia"], vendor_profiles()["amd"]
    base = generation(generation_factors(inv, settings, nvidia, "0.15.0"))
    # Forced backend: both vendors land on the same factors.
    assert generation(generation_factors(inv, settings, amd, "0.15.0")) == base
    assert generation(generation_factors(inv, settings, amd, "0.16.0")) != base
    assert base.startswith("g") and len(base) == 11


def test_network_path_is_explained(decide, lab_data):
    assert "network: RDMA (mlx5_0 -> mlx5_0)" in decide(lab_data).pairs[0].reasons
    del lab_data["hosts"][1]["nics"]
    assert "network: no RDMA NICs declared on mi300x-01, so UCX moves KV over TCP" in decide(lab_data).pairs[0].reasons
    (local,) = load_inventory("inventory/local.yaml").kv.pairs
    assert "same host: UCX moves KV through shared memory or loopback" in local.reasons


def test_versions_differing_only_in_a_local_suffix_turn_vllms_check_off_everywhere():
    """lab.yaml: CUDA wheel 0.15.0 -> ROCm source build 0.15.0+rocm644. vLLM hashes the exact string
    (its check would refuse every request); xpdctl renders the switch on both sides and compares the
    release's factors itself."""
    from xpdctl.plan import build_plan

    loaded = load_inventory("inventory/lab.yaml")
    (pair,) = loaded.kv.pairs
    assert pair.ok and not loaded.kv.settings.handshake_check and not pair.handshake_check
    assert [c.factor for c in pair.handshake] == ["vllm_version", "nixl_connector_version", "model", "dtype",
                                                  "num_kv_heads", "head_size", "num_hidden_layers",
                                                  "attn_backend_name", "cache_dtype"]  # vLLM 0.15.0's list
    assert all(c.ok for c in pair.handshake)
    assert "  vllm_version: 0.15.0 vs 0.15.0+rocm644 (vllm.__version__; same public release 0.15.0, local build " \
           "suffixes differ)" in pair.reasons
    engines = build_plan(loaded, {}).engines
    for engine in engines:
        config = engine.vllm_args[engine.vllm_args.index("--kv-transfer-config") + 1]
        assert '"kv_connector_extra_config":{"enforce_handshake_compat":false}' in config, engine.name
    # One generation: the router pairs them.
    assert len({e.details["generation"] for e in engines}) == 1


def test_equal_version_strings_keep_vllms_check_on(decide, lab_data):
    lab_data["hosts"][1].pop("vllm_version")
    kv = decide(lab_data)
    assert kv.settings.handshake_check and kv.pairs[0].handshake_check
    assert any(r.startswith("vLLM's handshake check on: the decode compares the hash of 9 factors") for r in kv.pairs[0].reasons)


def test_different_public_releases_stay_refused_even_with_suffixes(refusals, lab_data):
    lab_data["hosts"][1]["vllm_version"] = "0.26.0+rocm644"
    (found,) = [r for r in refusals(lab_data) if "accepts" not in r]  # 0.26.0's accepted values are not read
    assert "h100-01 runs vLLM 0.15.0 and mi300x-01 0.26.0+rocm644: the NIXL handshake refuses different versions" in found


def test_with_vllms_check_off_an_unknown_hybrid_manager_default_is_refused(refusals, lab_data):
    lab_data["kv"]["hybrid_kv_cache_manager"] = "auto"
    lab_data["engine"]["vllm_version"] = "0.32.0"  # 0.32.0 hashes is_hma_enabled, 0.15.0 does not
    lab_data["hosts"][1]["vllm_version"] = "0.32.0+rocm700"
    (found,) = refusals(lab_data)
    assert found.startswith("kv.hybrid_kv_cache_manager: handshake factor is_hma_enabled of h100-01 -> mi300x-01: "
                            "auto vs auto (kv.hybrid_kv_cache_manager auto leaves it to each build's default); "
                            "vLLM's check is off, so nothing else compares it")


def test_a_speculative_config_on_one_pool_only_is_refused(refusals, lab_data):
    lab_data["engine"]["vllm_version"] = "0.32.0"
    lab_data["hosts"][1]["vllm_version"] = "0.32.0+rocm700"
    lab_data["pools"]["decode"]["extra_args"] = ["--speculative-config", '{"method": "eagle3", "num_speculative_tokens": 2}']
    (found,) = refusals(lab_data)
    assert found.startswith('pools.decode.extra_args: handshake factor speculative_config of h100-01 -> mi300x-01: '
                            'none vs {"method":"eagle3","num_speculative_tokens":2}')
