"""Moving KV from prefill to decode: which path, how long, and what it does to decode.

Two paths (REFERENCE section 2): GPUDirect RDMA into device memory, possible only between peers of
one vendor whose devices support it; and staging through host memory, the path across vendors. The
host-staged path is slower per transfer (measured ~4 GB/s against ~22 GB/s at 200 Gb/s line rate)
but, in the report, buffers KV and paces it into the decode engine, where the device path lands
bursts straight into the decoding GPUs' memory and slows decode once long sequences are resident.
"""

from __future__ import annotations

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


def path_rate_b_s(path: KvPath, cal: Calibration, nics: float = 1.0) -> float:
    """Bytes/s one transfer gets; ``nics`` is the decode instance's share of its host's NICs."""
    if path == "host":
        return cal.host_staged_gb_s * 1e9
    return max(nics, 0.01) * cal.nic_gbps / 8 * 1e9 * cal.gpudirect_line_efficiency


def transfer_s(kv_bytes: float, path: KvPath, cal: Calibration, nics: float = 1.0) -> float:
    return cal.kv_transfer_setup_ms / 1000 + kv_bytes / path_rate_b_s(path, cal, nics)


def congestion_pressure(resident_kv_bytes: float, path: KvPath, cal: Calibration) -> float:
    """How far a decode instance's resident KV lies beyond the saturation point (0 = below it)."""
    if path == "host" and cal.host_staged_moderated:
        return 0.0
    return max(0.0, resident_kv_bytes / (cal.congestion_saturation_gb * 1e9) - 1.0)


def congestion_factor(resident_kv_bytes: float, path: KvPath, cal: Calibration) -> float:
    """Multiplier on decode ITL from unmoderated KV bursts (1.0 = none); saturates at 1 + congestion_max."""
    p = congestion_pressure(resident_kv_bytes, path, cal)
    return 1.0 + cal.congestion_max * p / (1.0 + p)
