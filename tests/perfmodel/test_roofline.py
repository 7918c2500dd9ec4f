"""Step times from the hardware table and the model shape (REFERENCE section 7 numbers)."""

from __future__ import annotations

import math

import pytest

from xpdctl.errors import InputError
from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.specs import find_hardware, hardware, model_spec

GPT = model_spec("openai/gpt-oss-120b")


def test_kv_bytes_match_reference_section_7():
    # 18 full layers x N x 2 KiB + 18 sliding layers x 128 x 2 KiB.
    assert GPT.kv_bytes_per_token_layer == 2048
    assert GPT.kv_bytes(1024) == pytest.approx(42.5e6, rel=0.01)
    assert GPT.kv_bytes(8192) == pytest.approx(307e6, rel=0.01)
    assert GPT.kv_bytes(8192, hybrid=False) == pytest.approx(2 * GPT.kv_bytes(8192), rel=0.02)


def test_model_shape_adds_up_to_the_reports_parameter_counts():
    assert GPT.active_params == pytest.approx(5.1e9, rel=0.02)
    assert GPT.dense_params + GPT.expert_params == pytest.approx(116.8e9, rel=0.01)


def test_one_token_reads_about_5_gb_and_a_long_prompt_reads_every_expert():
    assert GPT.weight_bytes_touched(1) == pytest.approx(5e9, rel=0.05)
    assert GPT.weight_bytes_touched(32) < GPT.weight_bytes_touched(64) < GPT.weight_bytes
    assert GPT.weight_bytes_touched(8192) == pytest.approx(GPT.weight_bytes, rel=1e-6)


def test_gpu_model_strings_resolve_to_profiles():
    assert hardware("NVIDIA H100 80GB HBM3").name == "H100-SXM"
    assert hardware("mi300x").name == "MI300X"
    assert find_hardware("A100") is None
    with pytest.raises(InputError, match="no performance profile for GPU model 'A100'"):
        hardware("A100")
    with pytest.raises(InputError, match="no performance model"):
        model_spec("llama-3-70b")


def test_on_chip_memory_sets_sustained_compute():
    h100 = InstanceModel(hardware("H100"), 8, GPT, DEFAULT)
    mi300x = InstanceModel(hardware("MI300X"), 8, GPT, DEFAULT)
    for phase in ("prefill", "decode"):
        assert h100.compute_efficiency(phase) / mi300x.compute_efficiency(phase) == pytest.approx(math.sqrt(256 / 96))
        # Peak favours MI300X (1,307 vs 989 TFLOP/s); sustained favours H100.
        assert h100.flops_per_s(phase) > mi300x.flops_per_s(phase)
        assert mi300x.bytes_per_s() / h100.bytes_per_s() == pytest.approx(5.3 / 3.35)


def test_decode_is_memory_side_and_prefill_compute_side():
    h100 = InstanceModel(hardware("H100"), 8, GPT, DEFAULT)
    mi300x = InstanceModel(hardware("MI300X"), 8, GPT, DEFAULT)
    d_h, d_m = h100.decode_step(1, 2048), mi300x.decode_step(1, 2048)
    assert d_h.compute_s < d_h.memory_s and d_m.memory_s < d_h.memory_s
    p_h, p_m = h100.prefill_step(8192, 8192), mi300x.prefill_step(8192, 8192)
    assert p_h.bound == p_m.bound == "compute"
    assert p_h.total_s < p_m.total_s


def test_a_lone_prompt_chunk_is_bandwidth_bound_and_a_full_step_compute_bound():
    """The report: at low concurrency prefill is bandwidth-bound (MI300X's edge), at high concurrency
    compute-bound (H100's edge). Here: one prompt's chunk rereads every expert; a full step amortises it."""
    h100 = InstanceModel(hardware("H100"), 8, GPT, DEFAULT)
    mi300x = InstanceModel(hardware("MI300X"), 8, GPT, DEFAULT)
    alone_h, _, step_h = h100.prefill_residence_s(8192, present=1)
    alone_m, _, step_m = mi300x.prefill_residence_s(8192, present=1)
    assert step_h.bound == step_m.bound == "bandwidth"
    assert alone_m < alone_h
    _, busy_h, full_h = h100.prefill_residence_s(8192, present=64)
    _, busy_m, full_m = mi300x.prefill_residence_s(8192, present=64)
    assert full_h.bound == full_m.bound == "compute"
    assert busy_h < busy_m  # instance time per prompt: the H100 node prefills more prompts per second


def test_decode_step_grows_with_batch_and_context():
    mi300x = InstanceModel(hardware("MI300X"), 8, GPT, DEFAULT)
    assert mi300x.decode_step(1, 1024).total_s < mi300x.decode_step(32, 1024).total_s
    assert mi300x.decode_step(32, 1024).total_s < mi300x.decode_step(32, 16384).total_s


def test_tensor_parallel_trades_comm_for_per_device_work():
    tp1 = InstanceModel(hardware("H100"), 1, GPT, DEFAULT)
    tp8 = InstanceModel(hardware("H100"), 8, GPT, DEFAULT)
    assert tp1.decode_step(1, 1024).comm_s == 0
    assert tp8.decode_step(1, 1024).comm_s > 0
    assert tp8.prefill_step(8192, 8192).compute_s == pytest.approx(tp1.prefill_step(8192, 8192).compute_s / 8)


def test_fit_needs_memory_for_the_weights():
    assert InstanceModel(hardware("MI300X"), 1, GPT, DEFAULT).fits()
    small = hardware("H100").model_copy(update={"hbm_gb": 40})
    assert not InstanceModel(small, 1, GPT, DEFAULT).fits()
    assert InstanceModel(small, 2, GPT, DEFAULT).fits()
