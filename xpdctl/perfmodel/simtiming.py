"""Hardware-profile timing for the simulator engine (``xpdctl sim --profile H100-SXM|MI300X``).

It stands in for :class:`xpdctl.sim.timing.TimingModel` (same methods) with the performance model's
numbers for one instance of the profile at the given TP, so a simulated H100 prefill + MI300X decode
cluster behaves like the hardware would, on this machine's loopback:

- prefill: first-come first-served, each prompt holding the instance for its share of the steps it
  would share with the prompts present when it arrives (alone: its whole chunked prefill; under load:
  less, as chunks of several prompts fill a step), so the instance saturates at the model's rate;
- KV pull (decode side): the transfer over the configured path, one at a time per instance, then
  one decode step for the first token;
- decode: every token of a request follows after the decode step at the batch (sequences now
  decoding on this instance, itself included) and context it was admitted with, slowed by the
  device-path congestion factor of the resident KV.

Each request's schedule is fixed when it is admitted (the simulator precomputes token times), so a
batch that grows later does not slow requests already running: a first-order model of batching.
The engine reports the prompt length through ``prefill_s``/``kv_pull_s`` immediately before it asks
for the request's ``token_times``; the context of the decode step comes from that call.
``time_scale`` multiplies every duration (tests run a scaled-down clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.kvpath import KvPath
from xpdctl.perfmodel.roofline import InstanceModel


@dataclass
class ProfileTiming:
    instance: InstanceModel
    path: KvPath = "host"
    time_scale: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _prefill_free_at: float = 0.0
    _prefill_ends: list[float] = field(default_factory=list)
    _link_free_at: float = 0.0
    _decoding: list[tuple[float, float]] = field(default_factory=list)  # (ends at, resident KV bytes)
    _prompt_tokens: int = 1

    @property
    def cal(self) -> Calibration:
        return self.instance.cal

    def _fcfs(self, free_at: float, service_s: float) -> tuple[float, float]:
        """(delay until done, new free-at) for a job of ``service_s`` on a one-at-a-time server."""
        now = self.clock()
        start = max(now, free_at)
        return start + service_s - now, start + service_s

    def prefill_s(self, prompt_tokens: int) -> float:
        self._prompt_tokens = prompt_tokens
        now = self.clock()
        self._prefill_ends = [end for end in self._prefill_ends if end > now]
        occupancy = self.instance.prefill_residence_s(prompt_tokens, present=1.0 + len(self._prefill_ends))[1]
        delay, self._prefill_free_at = self._fcfs(self._prefill_free_at, occupancy * self.time_scale)
        self._prefill_ends.append(now + delay)
        return delay

    def kv_pull_s(self, prompt_tokens: int) -> float:
        self._prompt_tokens = prompt_tokens
        # Same TP on both sides, the report's one 200 Gb/s NIC: the stages of kvpath.transfer.
        transfer = kvpath.transfer(self.instance.model.kv_bytes(prompt_tokens), self.path, self.cal, self.instance.tp,
                                   self.instance.tp, self.cal.default_nic_gbps).seconds
        delay, self._link_free_at = self._fcfs(self._link_free_at, transfer * self.time_scale)
        return delay + self.itl_s()

    def itl_s(self, tokens: int = 1) -> float:
        now = self.clock()
        self._decoding = [(end, kv) for end, kv in self._decoding if end > now]
        context = self._prompt_tokens + tokens / 2
        batch = len(self._decoding) + 1
        resident = sum(kv for _, kv in self._decoding) + self.instance.model.kv_bytes(context)
        step = self.instance.decode_step(batch, context).total_s
        return step * kvpath.congestion_factor(resident, self.path, self.cal) * self.time_scale

    def token_times(self, first_token_s: float, count: int) -> list[float]:
        itl = self.itl_s(count)
        times = [first_token_s + i * itl for i in range(count)]
        ends = self.clock() + times[-1] if times else self.clock()
        self._decoding.append((ends, self.instance.model.kv_bytes(self._prompt_tokens + count / 2)))
        return times

