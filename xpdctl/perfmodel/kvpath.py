"""Moving KV from prefill to decode: which path, its stages, their rates, and what they cost the engines.

Two paths: GPUDirect RDMA into device memory, possible only between peers of one vendor whose devices
support it; and staging through host memory, the path across vendors. vLLM 0.32 stages in three
stages that run one after the other (docs/performance.md, "KV transfer"):

1. save (prefill side, device -> host): ``save_kv_to_host`` (distributed/kv_transfer/kv_connector/v1/nixl/
   base_worker.py) calls the platform's ``swap_out_blocks_to_host`` (platforms/cuda.py), per layer a
   gather on the GPU and ``.cpu()`` into a pageable tensor, then a copy into the registered host buffer,
   synchronously in the engine's step: it holds the prefill engine for its duration;
2. NIC: the whole request's KV (every TP rank's share) over the hosts' NICs at their line rate;
3. load (decode side, host -> device): ``sync_recved_kv_to_device``, the reverse, synchronously in the
   decode engine's step: every sequence decoding there waits for it.

Each GPU of the TP group copies its own share (1/TP of the bytes) in parallel, so the save and load
stages scale with the bytes per GPU; the NIC stage carries the whole request. The device path has
one stage, the NIC, at its line rate.

Decode-side cost of the host path (``load_stall``) is computed: loads arrive at the request rate and
each stops decoding for its duration. On the device path the report sees decode slowed by "unmoderated
KV cache bursts"; no stated quantity gives its size, so it is a fitted term (``congestion_factor``,
constants fitted to the report's tables, per path, and said so in calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.specs import HardwareProfile

KvPath = Literal["host", "device"]


def choose_path(prefill: HardwareProfile, decode: HardwareProfile, buffer: str = "auto") -> KvPath:
    """The inventory's ``kv.buffer`` rule: auto = host memory across vendors, device memory within one."""
    if buffer == "cpu":
        return "host"
    if buffer == "device":
        return "device"
    same_stack = prefill.vendor == decode.vendor and prefill.gpudirect_rdma and decode.gpudirect_rdma
    return "device" if same_stack else "host"


@dataclass(frozen=True)
class Stage:
    name: str
    bytes: float  # what this stage moves (per GPU for the copies, per request for the NIC)
    fixed_s: float
    rate_b_s: float
    how: str  # where the rate comes from, in a few words

    @property
    def seconds(self) -> float:
        return self.fixed_s + self.bytes / self.rate_b_s

    def describe(self) -> str:
        fixed = f"{self.fixed_s * 1000:.1f} ms + " if self.fixed_s else ""
        return (f"{self.name} {self.seconds * 1000:.1f} ms ({fixed}{self.bytes / 1e6:.1f} MB at "
                f"{self.rate_b_s / 1e9:.1f} GB/s, {self.how})")


@dataclass(frozen=True)
class Transfer:
    path: KvPath
    stages: tuple[Stage, ...]

    @property
    def seconds(self) -> float:
        """vLLM 0.32 runs the stages one after the other: their sum."""
        return sum(s.seconds for s in self.stages)

    def stage(self, name: str) -> float:
        return sum(s.seconds for s in self.stages if s.name == name)

    def describe(self) -> str:
        return " + ".join(s.describe() for s in self.stages) + f" = {self.seconds * 1000:.1f} ms"


def nic_rate_b_s(nic_gbps: float, cal: Calibration) -> float:
    """Bytes/s one transfer gets from ``nic_gbps`` of line rate (NIC count x line rate, shared share)."""
    return max(nic_gbps, 0.01) / 8 * 1e9 * cal.nic_line_efficiency


def transfer(kv_bytes: float, path: KvPath, cal: Calibration, tp_prefill: int, tp_decode: int,
             nic_gbps: float) -> Transfer:
    """The stages that move one request's ``kv_bytes`` from a TP ``tp_prefill`` group to a TP ``tp_decode`` one."""
    nic = Stage("NIC", kv_bytes, cal.kv_transfer_setup_ms / 1000, nic_rate_b_s(nic_gbps, cal),
                f"{nic_gbps:g} Gb/s of NIC line rate x {cal.nic_line_efficiency:g}")
    if path == "device":
        return Transfer(path, (nic,))
    save = Stage("save", kv_bytes / tp_prefill, cal.host_save_fixed_ms / 1000, cal.host_save_gb_s * 1e9,
                 "per-layer .cpu(), per GPU")
    load = Stage("load", kv_bytes / tp_decode, cal.host_load_fixed_ms / 1000, cal.host_load_gb_s * 1e9,
                 "per-layer .to(gpu), per GPU")
    return Transfer(path, (save, nic, load))


def load_stall(arrivals_per_s: float, xfer: Transfer) -> float:
    """Multiplier on a decode instance's ITL from synchronous KV loads (1.0 = none).

    Loads arrive at ``arrivals_per_s`` and each holds the engine for its duration, so decode runs
    in the fraction of time left: ITL / (1 - arrivals x load time). Capped at 20x (a saturated
    engine; the closed loop then slows arrivals).
    """
    busy = arrivals_per_s * xfer.stage("load")
    return 1.0 / max(0.05, 1.0 - busy)


def congestion_pressure(resident_kv_bytes: float, cal: Calibration) -> float:
    """How far a decode instance's resident KV lies beyond the fitted saturation point (0 = below it)."""
    return max(0.0, resident_kv_bytes / (cal.congestion_saturation_gb * 1e9) - 1.0)


def congestion_factor(resident_kv_bytes: float, path: KvPath, cal: Calibration) -> float:
    """Fitted multiplier on decode ITL from KV bursts (1.0 = none): 1 + max_path x p / (1 + p)."""
    p = congestion_pressure(resident_kv_bytes, cal)
    peak = cal.congestion_max_host if path == "host" else cal.congestion_max_device
    return 1.0 + peak * p / (1.0 + p)
