"""``nvidia-smi -q -x`` and ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits``.

The XML layout moved between driver branches (``power_readings`` became ``gpu_power_readings``; ECC
counters went from ``single_bit``/``double_bit`` totals to per-memory ``*_correctable`` fields), so
each value is looked up through a list of candidate paths, newest first.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

from xpdctl.errors import ExecutionError
from xpdctl.probes.values import integer, number, text
from xpdctl.status_model import Accelerators, Gpu

# Gpu field -> candidate paths under <gpu>, first one with a value wins.
_XML_NUMBERS: dict[str, tuple[str, ...]] = {
    "memory_total_mib": ("fb_memory_usage/total",),
    "memory_used_mib": ("fb_memory_usage/used",),
    "utilization_pct": ("utilization/gpu_util",),
    "temperature_c": ("temperature/gpu_temp",),
    "power_w": (
        "gpu_power_readings/average_power_draw",
        "gpu_power_readings/power_draw",
        "gpu_power_readings/instant_power_draw",
        "power_readings/power_draw",
    ),
    "power_limit_w": (
        "gpu_power_readings/current_power_limit",
        "gpu_power_readings/power_limit",
        "power_readings/power_limit",
    ),
}

# ECC counters since the driver loaded: summed over every path that exists in this layout.
_XML_ECC: dict[str, tuple[tuple[str, ...], ...]] = {
    "ecc_errors_corrected": (
        ("ecc_errors/volatile/dram_correctable", "ecc_errors/volatile/sram_correctable"),
        ("ecc_errors/volatile/single_bit/total",),
    ),
    "ecc_errors_uncorrected": (
        (
            "ecc_errors/volatile/dram_uncorrectable",
            "ecc_errors/volatile/sram_uncorrectable_parity",
            "ecc_errors/volatile/sram_uncorrectable_secded",
            "ecc_errors/volatile/sram_uncorrectable",
        ),
        ("ecc_errors/volatile/double_bit/total",),
    ),
}

# The --query-gpu fields status asks for, in order, and the Gpu field each fills.
QUERY_FIELDS: tuple[tuple[str, str | None], ...] = (
    ("index", "index"),
    ("name", "name"),
    ("uuid", "uuid"),
    ("pci.bus_id", "bus_id"),
    ("driver_version", None),
    ("memory.total", "memory_total_mib"),
    ("memory.used", "memory_used_mib"),
    ("utilization.gpu", "utilization_pct"),
    ("temperature.gpu", "temperature_c"),
    ("power.draw", "power_w"),
    ("clocks.sm", None),
    ("ecc.errors.uncorrected.volatile.total", "ecc_errors_uncorrected"),
)
QUERY_ARGS = (
    "--query-gpu=" + ",".join(name for name, _ in QUERY_FIELDS),
    "--format=csv,noheader,nounits",
)
_TEXT_FIELDS = {"name", "uuid", "bus_id"}
_INT_FIELDS = {"index", "ecc_errors_uncorrected", "ecc_errors_corrected"}


def _first_number(gpu: ET.Element, paths: tuple[str, ...]) -> float | None:
    for path in paths:
        found = number(gpu.findtext(path))
        if found is not None:
            return found
    return None


def _ecc(gpu: ET.Element, layouts: tuple[tuple[str, ...], ...]) -> int | None:
    for paths in layouts:
        values = [integer(gpu.findtext(path)) for path in paths]
        present = [v for v in values if v is not None]
        if present:
            return sum(present)
    return None


def parse_query_xml(xml_text: str) -> Accelerators:
    """Parse ``nvidia-smi -q -x``: driver and CUDA versions and every GPU."""
    try:
        root = ET.fromstring(xml_text.strip())
    except ET.ParseError as exc:
        raise ExecutionError(
            f"nvidia-smi -q -x printed XML that does not parse ({exc}); run it on the host to see why "
            "(a driver/library version mismatch prints an error instead of XML)"
        ) from exc
    gpus = []
    for position, gpu in enumerate(root.findall("gpu")):
        fields: dict = {name: _first_number(gpu, paths) for name, paths in _XML_NUMBERS.items()}
        fields.update({name: _ecc(gpu, layouts) for name, layouts in _XML_ECC.items()})
        gpus.append(
            Gpu(
                # nvidia-smi lists GPUs in its own index order (by PCI address), not by minor number.
                index=position,
                vendor="nvidia",
                name=text(gpu.findtext("product_name")) or "unknown NVIDIA GPU",
                uuid=text(gpu.findtext("uuid")),
                fabric_state=text(gpu.findtext("fabric/state")),
                fabric_status=text(gpu.findtext("fabric/status")),
                bus_id=text(gpu.get("id")) or text(gpu.findtext("pci/pci_bus_id")),
                **fields,
            )
        )
    return Accelerators(
        driver_version=text(root.findtext("driver_version")),
        cuda_version=text(root.findtext("cuda_version")),
        gpus=gpus,
    )


def parse_query_csv(csv_text: str, fields: tuple[tuple[str, str | None], ...] = QUERY_FIELDS) -> Accelerators:
    """Parse ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits``.

    ``fields`` must be the query's fields in the query's order (default: :data:`QUERY_FIELDS`).
    """
    gpus = []
    driver = None
    for row in csv.reader(io.StringIO(csv_text.strip()), skipinitialspace=True):
        if not row:
            continue
        if len(row) != len(fields):
            raise ExecutionError(
                f"nvidia-smi --query-gpu printed {len(row)} columns, expected {len(fields)} "
                f"({', '.join(name for name, _ in fields)}); an older driver may not know one of the fields"
            )
        values: dict = {"vendor": "nvidia"}
        for (query_name, target), raw in zip(fields, row):
            if query_name == "driver_version":
                driver = text(raw)
            if target is None:
                continue
            if target in _TEXT_FIELDS:
                values[target] = text(raw)
            elif target in _INT_FIELDS:
                values[target] = integer(raw)
            else:
                values[target] = number(raw)
        values["name"] = values.get("name") or "unknown NVIDIA GPU"
        gpus.append(Gpu(**values))
    return Accelerators(driver_version=driver, gpus=gpus)
