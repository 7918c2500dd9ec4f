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

from xpdctl.perfmodel.calibration import Calibration
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

    @property
    def compute_efficiency(self) -> float:
        eff = self.cal.compute_efficiency_per_sqrt_kb * math.sqrt(self.hw.onchip_kb_per_unit)
        return min(eff, self.cal.compute_efficiency_cap)

    @property
    def flops_per_s(self) -> float:
        return self.tp * self.hw.bf16_tflops * 1e12 * self.compute_efficiency

    @property
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

    def step(self, tokens: float, sequences: float, attended: float, kv_read_bytes: float) -> StepTime:
        """One forward step over ``tokens`` tokens of ``sequences`` sequences.

        ``attended`` is the sum over the step's tokens of the (layer-summed) tokens each attends to;
        ``kv_read_bytes`` the KV the step reads.
        """
        m = self.model
        flops = 2 * m.active_params * tokens + 4 * m.q_heads * m.head_dim * attended
        memory = m.weight_bytes_touched(tokens) + kv_read_bytes
        overhead = (self.cal.step_overhead_ms + self.cal.per_sequence_step_ms * sequences) / 1000
        return StepTime(overhead, self._allreduce_s(tokens), flops / self.flops_per_s, memory / self.bytes_per_s)

    def prefill_step(self, tokens: float, prompt_tokens: int) -> StepTime:
        """A step carrying ``tokens`` prompt tokens from prompts of ``prompt_tokens`` tokens each.

        Chunks of one prompt attend to the whole prompt so far; on average to half of it.
        """
        sequences = max(1.0, tokens / prompt_tokens)
        attended = tokens * self.model.attended_tokens(prompt_tokens / 2)
        kv = self.model.kv_bytes(prompt_tokens / 2) * sequences
        return self.step(tokens, sequences, attended, kv)

    def decode_step(self, batch: float, context: float) -> StepTime:
        """A decode step of ``batch`` sequences of ``context`` tokens each (one new token each)."""
        batch = max(batch, 1.0)
        return self.step(batch, batch, batch * self.model.attended_tokens(context), batch * self.model.kv_bytes(context))

    def prefill_occupancy_s(self, prompt_tokens: int, waiting: float) -> tuple[float, float, StepTime]:
        """How long one prompt occupies the instance, and its own latency, with ``waiting`` prompts queued.

        vLLM fills each step up to its token budget, so under load short prompts share steps (more
        tokens per step: fewer weight reads per token) and long prompts run in budget-sized chunks.
        Returns (occupancy per prompt, latency of the prompt's steps, one step).
        """
        budget = self.cal.prefill_step_tokens
        tokens = min(budget, prompt_tokens * max(1.0, 1.0 + waiting)) if prompt_tokens < budget else budget
        step = self.prefill_step(tokens, prompt_tokens)
        steps_for_prompt = math.ceil(prompt_tokens / budget) if prompt_tokens > budget else 1
        occupancy = step.total_s * prompt_tokens / tokens
        return occupancy, step.total_s * steps_for_prompt, step
