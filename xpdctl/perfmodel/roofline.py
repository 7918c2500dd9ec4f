"""Time of one engine step on one instance (a TP group of one device type), from first principles.

A step over ``tokens`` tokens costs

    fixed overhead + per-sequence overhead + tensor-parallel all-reduces + FLOPs / sustained compute
    + bytes / sustained bandwidth

The compute and memory terms are added, not overlapped (a pessimistic roofline): at the per-expert
batch sizes of MoE serving, dequantize-on-load expert kernels do not hide weight streaming behind
math. Which term dominates is what decides whether a device's compute (H100) or bandwidth (MI300X)
matters, and it shifts with the number of tokens per step: few tokens read few experts and are
bound by overheads and bandwidth; thousands read every expert once and are bound by compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from xpdctl.perfmodel.calibration import Calibration

Phase = Literal["prefill", "decode"]
from xpdctl.perfmodel.specs import HardwareProfile, ModelSpec


@dataclass(frozen=True)
class StepTime:
    overhead_s: float
    comm_s: float
    compute_s: float
    memory_s: float

    @property
    def total_s(self) -> float:
        return self.overhead_s + self.comm_s + self.compute_s + self.memory_s

    @property
    def bound(self) -> str:
        """The largest term: what a faster device would have to improve."""
        terms = {"overhead": self.overhead_s, "tp-comm": self.comm_s, "compute": self.compute_s, "bandwidth": self.memory_s}
        return max(terms, key=terms.__getitem__)


@dataclass(frozen=True)
class InstanceModel:
    hw: HardwareProfile
    tp: int
    model: ModelSpec
    cal: Calibration

    def compute_efficiency(self, phase: Phase) -> float:
        per_sqrt_kb = getattr(self.cal, f"{phase}_compute_efficiency_per_sqrt_kb")
        return min(per_sqrt_kb * math.sqrt(self.hw.onchip_kb_per_unit), self.cal.compute_efficiency_cap)

    def flops_per_s(self, phase: Phase) -> float:
        return self.tp * self.hw.bf16_tflops * 1e12 * self.compute_efficiency(phase)

    def bytes_per_s(self) -> float:
        return self.tp * self.hw.hbm_tb_s * 1e12 * self.cal.memory_efficiency

    def fits(self, headroom: float = 0.85) -> bool:
        """Whether the weights fit in the group's memory with room left for KV and activations."""
        return self.model.weight_bytes <= headroom * self.tp * self.hw.hbm_gb * 1e9

    def _allreduce_s(self, tokens: float) -> float:
        if self.tp == 1:
            return 0.0
        # Ring all-reduce of the hidden state (bf16): 2 (tp-1)/tp of the buffer over the link.
        buffer = tokens * self.model.hidden * 2
        per_call = self.cal.allreduce_latency_us * 1e-6 + 2 * buffer * (self.tp - 1) / self.tp / (self.hw.intra_node_gb_s * 1e9)
        return 2 * self.model.layers * per_call

    def step(self, phase: Phase, tokens: float, sequences: float, attended: float, kv_read_bytes: float) -> StepTime:
        """One ``phase`` step over ``tokens`` tokens of ``sequences`` sequences.

        ``attended`` is the sum over the step's tokens of the (layer-summed) tokens each attends to;
        ``kv_read_bytes`` the KV the step reads.
        """
        m = self.model
        flops = 2 * m.active_params * tokens + 4 * m.q_heads * m.head_dim * attended
        memory = m.weight_bytes_touched(tokens) + kv_read_bytes
        overhead = (self.cal.step_overhead_ms + self.cal.per_sequence_step_ms * sequences) / 1000
        return StepTime(overhead, self._allreduce_s(tokens), flops / self.flops_per_s(phase), memory / self.bytes_per_s())

    def prefill_step(self, tokens: float, prompt_tokens: int) -> StepTime:
        """A step carrying ``tokens`` prompt tokens from prompts of ``prompt_tokens`` tokens each.

        Chunks of one prompt attend to the whole prompt so far; on average to half of it.
        """
        sequences = max(1.0, tokens / prompt_tokens)
        attended = tokens * self.model.attended_tokens(prompt_tokens / 2)
        kv = self.model.kv_bytes(prompt_tokens / 2) * sequences
        return self.step("prefill", tokens, sequences, attended, kv)

    def decode_step(self, batch: float, context: float) -> StepTime:
        """A decode step of ``batch`` sequences of ``context`` tokens each (one new token each)."""
        batch = max(batch, 1.0)
        return self.step("decode", batch, batch, batch * self.model.attended_tokens(context), batch * self.model.kv_bytes(context))

    def prefill_residence_s(self, prompt_tokens: int, present: float) -> tuple[float, float, StepTime]:
        """Time a prompt spends in prefill with ``present`` prompts at the instance (itself included).

        A prompt runs in chunks of at most ``prefill_chunk_tokens``, one chunk per step; each step
        carries a chunk of every prompt present, up to the ``prefill_step_tokens`` budget, so prompts
        share steps (and the weight reads) as processor sharing does. Alone, a long prompt pays one
        weight read per chunk (bandwidth-bound); under load the step fills (compute-bound).
        Returns (residence, occupancy: the instance time the prompt uses, one step).
        """
        chunk = min(prompt_tokens, self.cal.prefill_chunk_tokens)
        chunks = math.ceil(prompt_tokens / chunk)
        most = max(1, self.cal.prefill_step_tokens // chunk)
        sharing = max(1.0, min(present, most))
        step = self.prefill_step(chunk * sharing, prompt_tokens)
        residence = chunks * step.total_s * max(1.0, present / most)
        return residence, chunks * step.total_s / sharing, step
