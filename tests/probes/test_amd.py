"""amd-smi / rocm-smi parsers.

The fixtures in tests/fixtures/amd are HAND-WRITTEN from the documented JSON formats (no MI300X output
was captured; see tests/fixtures/amd/README.md).
"""

from __future__ import annotations

import json

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.probes import amd


def test_static_and_metric_merge_per_gpu(amd_fixture):
    report = amd.parse_amd_smi(amd_fixture("amd-smi-static.json"), amd_fixture("amd-smi-metric.json"))
    assert report.driver_version == "6.8.5"
    assert [gpu.index for gpu in report.gpus] == [0, 1]
    busy, idle = report.gpus
    assert busy.vendor == "amd"
    assert busy.name == "AMD Instinct MI300X"
    assert busy.bus_id == "0000:0c:00.0"
    assert busy.memory_total_mib == 196592
    assert busy.memory_used_mib == 151283
    assert busy.utilization_pct == 37
    assert busy.temperature_c == 58  # hotspot: the MI300X has no edge sensor ("N/A")
    assert (busy.power_w, busy.power_limit_w) == (312, 750)
    assert (idle.ecc_errors_corrected, idle.ecc_errors_uncorrected) == (5, 2)


def test_both_amd_smi_json_layouts_parse_alike(amd_fixture):
    """ROCm 6 prints a bare list, ROCm 7 wraps it in gpu_data: convert each fixture to the other."""
    static_list = amd_fixture("amd-smi-static.json")
    metric_wrapped = amd_fixture("amd-smi-metric.json")
    static_wrapped = json.dumps({"gpu_data": json.loads(static_list)})
    metric_list = json.dumps(json.loads(metric_wrapped)["gpu_data"])
    assert amd.parse_amd_smi(static_list, metric_wrapped) == amd.parse_amd_smi(static_wrapped, metric_list)


def test_static_alone_still_names_the_gpus(amd_fixture):
    report = amd.parse_amd_smi(amd_fixture("amd-smi-static.json"), None)
    assert [g.memory_total_mib for g in report.gpus] == [196592, 196592]
    assert all(g.utilization_pct is None for g in report.gpus)


def test_unloaded_driver_message_is_explained():
    with pytest.raises(ExecutionError, match="amdgpu driver"):
        amd.parse_amd_smi("ERROR:root:Unable to detect any GPU devices, check amdgpu version and module status\n", None)


def test_rocm_smi_product_names(amd_fixture):
    gpus = amd.parse_rocm_smi_product(amd_fixture("rocm-smi-productname.json")).gpus
    assert [(g.index, g.name) for g in gpus] == [(0, "AMD Instinct MI300X OAM"), (1, "AMD Instinct MI300X OAM")]


def test_rocm_smi_older_key_case():
    gpus = amd.parse_rocm_smi_product('{"card3": {"Card series": "Instinct MI210", "Card model": "0x740f"}}').gpus
    assert [(g.index, g.name) for g in gpus] == [(3, "Instinct MI210")]


def test_rocm_version(amd_fixture):
    assert amd.parse_rocm_version(amd_fixture("rocm-version.txt")) == "6.4.1"
