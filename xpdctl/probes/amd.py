"""``amd-smi static --json``, ``amd-smi metric --json``, ``rocm-smi --showproductname --json``.

amd-smi printed a bare list of per-GPU objects up to ROCm 6.x and wraps the same list as
``{"gpu_data": [...]}`` from ROCm 7; both are accepted. amd-smi labels memory "MB" but counts MiB
(196592 "MB" on a 192 GiB MI300X), so memory values are taken as MiB.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xpdctl.errors import ExecutionError
from xpdctl.probes.values import integer, number, text
from xpdctl.status_model import Accelerators, Gpu

# Gpu field -> candidate key paths in one GPU's object; first one with a value wins.
_STATIC_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "name": (("asic", "market_name"), ("board", "product_name")),
    "bus_id": (("bus", "bdf"),),
    "memory_total_mib": (("vram", "size"),),
    "power_limit_w": (("limit", "socket_power"), ("limit", "max_power")),
}
_METRIC_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "memory_total_mib": (("mem_usage", "total_vram"),),
    "memory_used_mib": (("mem_usage", "used_vram"),),
    "utilization_pct": (("usage", "gfx_activity"),),
    # MI300X has no edge sensor; the junction (hotspot) is what throttles.
    "temperature_c": (("temperature", "hotspot"), ("temperature", "edge")),
    "power_w": (("power", "socket_power"), ("power", "average_socket_power")),
    "ecc_errors_corrected": (("ecc", "total_correctable_count"),),
    "ecc_errors_uncorrected": (("ecc", "total_uncorrectable_count"),),
}
_TEXT_FIELDS = {"name", "bus_id"}
_INT_FIELDS = {"ecc_errors_corrected", "ecc_errors_uncorrected"}


def _load(tool: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        first = raw.strip().splitlines()[0][:120] if raw.strip() else "nothing"
        raise ExecutionError(
            f"{tool} printed no JSON (first line: {first!r}); run it on the host: the amdgpu driver may not be "
            "loaded, or the ROCm install may be incomplete"
        ) from exc


def _gpu_entries(tool: str, raw: str) -> list[dict]:
    data = _load(tool, raw)
    if isinstance(data, dict) and isinstance(data.get("gpu_data"), list):
        data = data["gpu_data"]
    if not isinstance(data, list):
        raise ExecutionError(f"{tool} printed JSON without a list of GPUs; is this an amd-smi version xpdctl knows?")
    return [entry for entry in data if isinstance(entry, dict) and "gpu" in entry]


def _dig(entry: dict, path: tuple[str, ...]) -> Any:
    node: Any = entry
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _extract(entry: dict, table: dict[str, tuple[tuple[str, ...], ...]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field, paths in table.items():
        convert = text if field in _TEXT_FIELDS else integer if field in _INT_FIELDS else number
        for path in paths:
            value = convert(_dig(entry, path))
            if value is not None:
                found[field] = value
                break
    return found


def parse_amd_smi(static_json: str | None, metric_json: str | None) -> Accelerators:
    """Merge ``amd-smi static --json`` and ``amd-smi metric --json`` (either may be missing) by GPU index."""
    by_index: dict[int, dict[str, Any]] = {}
    driver = None
    for tool, raw, table in (
        ("amd-smi static --json", static_json, _STATIC_FIELDS),
        ("amd-smi metric --json", metric_json, _METRIC_FIELDS),
    ):
        if not raw or not raw.strip():
            continue
        for entry in _gpu_entries(tool, raw):
            index = integer(entry["gpu"])
            if index is None:
                continue
            fields = by_index.setdefault(index, {})
            # Live numbers (metric) overwrite the static ones they share (total memory).
            fields.update(_extract(entry, table))
            driver = driver or text(_dig(entry, ("driver", "version")))
    gpus = [
        Gpu(index=index, vendor="amd", **{"name": "unknown AMD GPU", **fields})
        for index, fields in sorted(by_index.items())
    ]
    return Accelerators(driver_version=driver, gpus=gpus)


_CARD = re.compile(r"^card(\d+)$")


def parse_rocm_smi_product(raw: str) -> Accelerators:
    """``rocm-smi --showproductname --json``: names only, for hosts whose ROCm predates amd-smi."""
    data = _load("rocm-smi --showproductname --json", raw)
    gpus = []
    for key, card in data.items() if isinstance(data, dict) else ():
        match = _CARD.match(key)
        if not match or not isinstance(card, dict):
            continue
        # Key case changed between releases ("Card series" vs "Card Series").
        lowered = {str(k).lower(): v for k, v in card.items()}
        name = text(lowered.get("card series")) or text(lowered.get("card model")) or "unknown AMD GPU"
        gpus.append(Gpu(index=int(match.group(1)), vendor="amd", name=name))
    return Accelerators(gpus=sorted(gpus, key=lambda gpu: gpu.index))


def parse_rocm_version(raw: str) -> str | None:
    """``/opt/rocm/.info/version`` ("6.4.1-120") -> "6.4.1"."""
    first = raw.strip().splitlines()[0] if raw.strip() else ""
    return text(first.split("-")[0])
