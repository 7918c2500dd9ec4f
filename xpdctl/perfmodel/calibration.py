"""The model's constants that no data sheet or model config gives, each with its provenance.

Every field's description starts with what kind of figure it is:

- ``fitted``: chosen to fit the technical report's tables (which ones is said); the cross-validation
  (:mod:`.crossval`, benchmarks/perfmodel_crossval.py) refits exactly these on three of the report's four
  ISL/OSL scenarios and predicts the fourth;
- ``measured``: timed on real hardware (what, where, how);
- ``source``: read off a source (vLLM file, vendor document);
- ``assumed``: a round figure nobody here has checked, said so.

Hardware figures (peaks, on-chip memory) live in the GPU catalog, not here. ``--calibration FILE``
(YAML with any of these keys) overrides them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xpdctl.errors import InputError

_REPORT = "the technical report's tables (docs/performance.md)"
_H200 = "measured on an NVIDIA H200, PCIe Gen5 x16, torch 2.11, CUDA events, 2026-12-01"


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Sustained compute = fraction x peak BF16, fraction = constant x sqrt(on-chip KB per compute unit):
    # a GEMM's tile edge, and with it its arithmetic intensity, grows with the square root of the tile
    # store (the report's explanation of the H100's prefill lead). MXFP4 experts run as BF16 on both.
    prefill_compute_efficiency_per_sqrt_kb: float = Field(
        0.00115, gt=0, description=f"fitted: prefill step time against {_REPORT} (E2EL of both configurations and their ratios)")
    decode_compute_efficiency_per_sqrt_kb: float = Field(
        0.028, gt=0, description="assumed: decode steps are bandwidth/overhead-bound; changing it 2x moves no report point by 1%")
    compute_efficiency_cap: float = Field(0.85, gt=0, le=1, description="assumed: no kernel sustains more than 85% of peak")
    # One weight-streaming efficiency for both phases: a decode step and a lone prompt's prefill chunk do
    # the same thing to HBM (stream the touched MXFP4 experts through the same fused-MoE kernels), so
    # they share one figure. Tying them (two fitted constants before) lets the decode-dominated points
    # pin what a lone prefill chunk costs, which is what the held-out 8K/1K fold cannot learn alone.
    memory_efficiency: float = Field(
        0.15, gt=0, le=1, description=f"fitted: fraction of HBM bandwidth while streaming weights (decode steps and a lone prompt's prefill chunks alike), against {_REPORT} (decode-dominated E2EL)")
    step_overhead_ms: float = Field(
        3.0, ge=0, description="assumed: fixed cost of one engine step (kernel launches, scheduler, sampling); with memory_efficiency it sets single-stream ITL")
    per_sequence_step_ms: float = Field(
        0.030435, ge=0, description=f"fitted: per-sequence cost of a decode step (ITL grows with the batch), against {_REPORT}")
    allreduce_latency_us: float = Field(20.0, ge=0, description="assumed: one tensor-parallel all-reduce of a small buffer")
    prefill_step_tokens: int = Field(
        8192, ge=1, description="source: vLLM's default max_num_batched_tokens for the OpenAI server on >= 70 GB devices (vllm/engine/arg_utils.py)")
    prefill_chunk_tokens: int = Field(
        56, ge=1, description=f"fitted: tokens of one long prompt per step (the report's engine chunks long prompts; vLLM 0.32's long_prefill_token_threshold defaults to 0, vllm/config/scheduler.py), against {_REPORT}")
    # The host-staged stages as vLLM 0.32 runs them (kvpath.py): fixed + bytes per GPU / rate. Linear fit
    # of the H200 timings of 1K/8K/16K prompts at TP 8 (docs/performance.md, "KV transfer").
    host_save_fixed_ms: float = Field(2.5, ge=0, description=f"measured: {_H200}; vLLM 0.32 save_kv_to_host, 36 per-layer copies")
    host_save_gb_s: float = Field(5.6, gt=0, description=f"measured: {_H200}; vLLM 0.32 save_kv_to_host, per GPU")
    host_load_fixed_ms: float = Field(1.8, ge=0, description=f"measured: {_H200}; vLLM 0.32 sync_recved_kv_to_device")
    host_load_gb_s: float = Field(6.4, gt=0, description=f"measured: {_H200}; vLLM 0.32 sync_recved_kv_to_device, per GPU")
    nic_line_efficiency: float = Field(0.9, gt=0, le=1, description="assumed: RDMA payload reaches 90% of the line rate (unverified)")
    default_nic_gbps: float = Field(
        200.0, gt=0, description="source: the report's nodes (ConnectX-6, 200 Gb/s); used only for a host whose inventory entry gives no nic_gbps")
    kv_transfer_setup_ms: float = Field(2.0, ge=0, description="assumed: descriptor preparation and notification per transfer (unverified)")
    # Decode-side congestion from KV bursts (the report's claim for the GPUDirect path): ITL factor
    # 1 + max x p / (1 + p), p = resident KV per decode instance / saturation - 1 (p >= 0).
    congestion_saturation_gb: float = Field(
        2.3, gt=0, description=f"fitted: resident KV per decode instance where burst congestion starts, against {_REPORT}")
    congestion_max_device: float = Field(
        1.15, ge=0, description=f"fitted: largest ITL slowdown from KV bursts on the GPUDirect path, against {_REPORT}")
    congestion_max_host: float = Field(
        0.2875, ge=0, description=f"fitted: the same on the host-staged path, against {_REPORT} (the report credits host buffering with avoiding it; the fit, started at 0.5, keeps a quarter of the device path's)")


# The fields the fit chooses (crossval.fit; the defaults are its result on all the report's points,
# the cross-validation refits them per fold); the rest are measured, sourced or assumed.
FITTED = tuple(name for name, f in Calibration.model_fields.items()
               if (f.description or "").startswith("fitted"))

DEFAULT = Calibration()


def provenance() -> list[tuple[str, object, str, str]]:
    """(name, default, kind, what) for every constant: the table docs/performance.md shows."""
    rows = []
    for name, f in Calibration.model_fields.items():
        kind, _, what = (f.description or "unknown: ").partition(": ")
        rows.append((name, f.default, kind, what))
    return rows


def load_calibration(path: Path | None) -> Calibration:
    if path is None:
        return DEFAULT
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read calibration: {exc}; pass a YAML mapping of calibration keys") from exc
    try:
        return Calibration(**data)
    except (ValidationError, TypeError) as exc:
        raise InputError(
            f"{path}: invalid calibration: {exc}; keys are {', '.join(Calibration.model_fields)}"
        ) from exc
