"""The simulator's timing model, in one place so hardware profiles can replace its numbers.

A request spends ``prefill_s`` before its first token when it computes its own prompt, or
``kv_pull_s`` when a prefill instance computed it; each further token follows after ``itl_s``.
Concurrent requests do not slow each other: the model is a latency model, not a throughput model.
"""

from __future__ import annotations

from dataclasses import dataclass

from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.simtiming import ProfileTiming
from xpdctl.perfmodel.specs import hardware, model_spec
from xpdctl.sim.config import SimConfig


@dataclass(frozen=True)
class TimingModel:
    ttft_ms: float
    itl_ms: float
    prefill_ms_per_token: float
    kv_pull_ms: float

    @classmethod
    def from_config(cls, config: SimConfig) -> TimingModel:
        return cls(config.ttft_ms, config.itl_ms, config.prefill_ms_per_token, config.kv_pull_ms)

    def prefill_s(self, prompt_tokens: int) -> float:
        return (self.ttft_ms + self.prefill_ms_per_token * prompt_tokens) / 1000.0

    def kv_pull_s(self, prompt_tokens: int) -> float:
        return self.kv_pull_ms / 1000.0

    def itl_s(self) -> float:
        return self.itl_ms / 1000.0

    def token_times(self, first_token_s: float, count: int) -> list[float]:
        """Offsets from the request's start at which each of ``count`` tokens is ready."""
        itl = self.itl_s()
        return [first_token_s + i * itl for i in range(count)]


def timing_for(config: SimConfig) -> TimingModel | ProfileTiming:
    """The simulator's timing: the hardware profile's when ``config.profile`` names one, else the fixed numbers."""
    if not config.profile:
        return TimingModel.from_config(config)
    instance = InstanceModel(hardware(config.profile), config.profile_tp, model_spec(config.model_spec), DEFAULT)
    return ProfileTiming(instance, config.kv_path, config.time_scale)
