"""The model's fitted constants, each with where its value comes from.

Everything else the model uses is read off a data sheet (``hardware.yaml``) or a model config
(``models.yaml``). These are the numbers no sheet gives: what fraction of a peak real kernels reach,
fixed per-step costs of the serving engine, the measured KV transfer rate through host memory, and
the shape of the decode-side congestion the report observes on the device path. They are shared by
every device: hardware differences enter only through the hardware table. ``--calibration FILE``
(YAML with any of these keys) overrides them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xpdctl.errors import InputError


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Sustained fraction of peak BF16 throughput per sqrt(KB) of on-chip memory per compute unit.
    # Tile edge grows with the square root of the on-chip tile store, and a GEMM's arithmetic
    # intensity against L2/HBM grows with the tile edge, so a device with less L1/LDS per unit
    # sustains a smaller fraction of its peak (the report's explanation of the H100's prefill lead):
    # H100 (256 KB per SM) / MI300X (96 KB per CU) = 1.63x the fraction. MXFP4 experts are dequantized
    # to BF16 on both (neither has FP4 tensor cores).
    # Prefill (grouped expert GEMMs, chunked attention, the whole engine step): with
    # prefill_memory_efficiency and prefill_chunk_tokens, a least-squares fit to the report's 8K/1K
    # table (both configurations' E2EL, and their ratio weighted 4x; concurrency 1-256; the sweep is
    # benchmarks/perfmodel_fit.py). It matches the saturated throughput there (1.3 requests/s on the
    # H100 node: an 8K prompt takes ~0.75 s of H100 TP8 time), ~2% of peak. No roofline explains so low a figure; it is what the report's engine did, and bench
    # measurements replace it for yours.
    prefill_compute_efficiency_per_sqrt_kb: float = Field(0.0012, gt=0)
    # Decode (GEMV-like expert reads): compute hardly matters there.
    decode_compute_efficiency_per_sqrt_kb: float = Field(0.028, gt=0)
    compute_efficiency_cap: float = Field(0.85, gt=0, le=1)
    # Fraction of HBM bandwidth reached while streaming MXFP4 expert weights. Decode: fitted with the
    # step overheads below to the report's ITL growing from ~5 ms (concurrency 1) to ~11 ms (32) at
    # 1K/1K. Prefill: part of the 8K/1K fit above; it sets how much a lone prompt's chunks, each
    # rereading every expert, cost.
    prefill_memory_efficiency: float = Field(0.025, gt=0, le=1)
    decode_memory_efficiency: float = Field(0.3, gt=0, le=1)
    # Fixed cost of one engine step: kernel launches, scheduler, sampling. Fitted so that the
    # predicted single-stream ITL of GPT-OSS-120B at TP 8 is the report's ~5 ms (1K/1K, concurrency 1:
    # 5.32 s for 1,024 tokens).
    step_overhead_ms: float = Field(3.0, ge=0)
    # Per-sequence cost of a decode step (block tables, sampling, detokenization on the host), which
    # makes ITL grow with the batch as in the report (1K/1K: ~5 ms at concurrency 1, ~11 ms at 32).
    per_sequence_step_ms: float = Field(0.12, ge=0)
    # Latency of one tensor-parallel all-reduce (two per layer per step).
    allreduce_latency_us: float = Field(20.0, ge=0)
    # vLLM's max_num_batched_tokens for the OpenAI server on >= 70 GB devices: the prefill step budget.
    prefill_step_tokens: int = Field(8192, ge=1)
    # Chunk of one long prompt per step (vLLM's long_prefill_token_threshold with concurrent partial
    # prefills: 4% of max_model_len, 665 tokens at 16,640): alone, a long prompt runs chunk by chunk,
    # each chunk rereading the weights (bandwidth-bound, MI300X's edge); under load, chunks of several
    # prompts fill the step budget (compute-bound, H100's edge). 512 fits the report's 8K/1K table best
    # (665: the same shape, crossover one concurrency step earlier).
    prefill_chunk_tokens: int = Field(512, ge=1)
    # KV staged through host memory: NIXL measured on these machines at 3.9 GB/s (REFERENCE section
    # 3); the report's cross-vendor path stages through host memory too.
    host_staged_gb_s: float = Field(4.0, gt=0)
    # GPUDirect RDMA reaches this fraction of the NIC line rate.
    gpudirect_line_efficiency: float = Field(0.9, gt=0, le=1)
    nic_gbps: float = Field(200.0, gt=0)
    # Per-transfer setup (descriptor preparation, notification) on either path.
    kv_transfer_setup_ms: float = Field(2.0, ge=0)
    # Decode-side congestion on the device path (report: "unmoderated KV cache bursts via the NIXL
    # connector inflate inter-token latency"; seen only when long sequences are resident at decode:
    # 1K/8K and 8K/8K from concurrency 8, 8K/1K from 32, never at 1K/1K). Modelled as an ITL factor
    # 1 + max * p / (1 + p), with p = resident KV bytes per decode instance / saturation - 1 (p >= 0).
    # Both constants are fitted by eye to the shape of the report's single-vendor tables; the
    # mechanism is the report's claim, not derived here.
    congestion_saturation_gb: float = Field(2.8, gt=0)
    congestion_max: float = Field(1.0, ge=0)
    # The host-staged path buffers KV in host memory and feeds it to the decode engine at its own pace
    # (report: "software-based transfer buffering prevents decode-node queue saturation").
    host_staged_moderated: bool = True


DEFAULT = Calibration()


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
