"""nvidia-smi parsers on real output captured on a 2 x H200 host (tests/fixtures/nvidia-h200-x2)."""

from __future__ import annotations

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.probes import nvidia


def test_xml_reports_driver_cuda_and_both_gpus(nvidia_fixture):
    report = nvidia.parse_query_xml(nvidia_fixture("nvidia-smi-q.xml"))
    assert report.driver_version == "580.159.04"
    assert report.cuda_version == "13.0"
    assert [gpu.index for gpu in report.gpus] == [0, 1]
    first, second = report.gpus
    assert first.name == "NVIDIA H200"
    assert first.uuid == "GPU-5ce3095f-fb48-f4b7-c7d6-5ea1fa9f2599"
    assert second.uuid == "GPU-6b0adec1-f55e-9e76-512e-26bd8c1c4157"
    assert (first.bus_id, second.bus_id) == ("00000000:00:06.0", "00000000:00:07.0")
    assert first.memory_total_mib == 143771
    assert first.memory_used_mib == 0
    assert first.utilization_pct == 0
    assert first.temperature_c == 34
    assert first.power_w == pytest.approx(116.97)
    assert first.power_limit_w == 700
    assert (first.ecc_errors_corrected, first.ecc_errors_uncorrected) == (0, 0)


def test_xml_and_csv_agree_on_identity_and_memory(nvidia_fixture):
    from_xml = nvidia.parse_query_xml(nvidia_fixture("nvidia-smi-q.xml"))
    from_csv = nvidia.parse_query_csv(nvidia_fixture("nvidia-smi-query.csv"))
    assert from_csv.driver_version == from_xml.driver_version
    for xml_gpu, csv_gpu in zip(from_xml.gpus, from_csv.gpus, strict=True):
        assert (csv_gpu.index, csv_gpu.uuid, csv_gpu.bus_id, csv_gpu.memory_total_mib) == (
            xml_gpu.index,
            xml_gpu.uuid,
            xml_gpu.bus_id,
            xml_gpu.memory_total_mib,
        )


def test_csv_values(nvidia_fixture):
    gpus = nvidia.parse_query_csv(nvidia_fixture("nvidia-smi-query.csv")).gpus
    assert [g.temperature_c for g in gpus] == [34, 33]
    assert [g.power_w for g in gpus] == pytest.approx([109.65, 118.73])
    assert [g.ecc_errors_uncorrected for g in gpus] == [0, 0]


def test_xml_counts_uncorrectable_ecc_errors(nvidia_fixture):
    xml = nvidia_fixture("nvidia-smi-q.xml").replace(
        "<dram_uncorrectable>0</dram_uncorrectable>", "<dram_uncorrectable>3</dram_uncorrectable>", 1
    )
    first, second = nvidia.parse_query_xml(xml).gpus
    assert first.ecc_errors_uncorrected == 3
    assert second.ecc_errors_uncorrected == 0


def test_xml_of_older_drivers_layout():
    """Layout of the 535 branch (H100 fleets still run it), hand-written from its DTD: power under
    <power_readings>, ECC as single_bit/double_bit totals."""
    xml = """<?xml version="1.0" ?>
<nvidia_smi_log><driver_version>535.183.01</driver_version><cuda_version>12.2</cuda_version>
<gpu id="00000000:18:00.0"><product_name>NVIDIA H100 80GB HBM3</product_name><uuid>GPU-1</uuid>
<fb_memory_usage><total>81559 MiB</total><used>7 MiB</used></fb_memory_usage>
<utilization><gpu_util>5 %</gpu_util></utilization><temperature><gpu_temp>31 C</gpu_temp></temperature>
<ecc_errors><volatile><single_bit><total>4</total></single_bit><double_bit><total>1</total></double_bit></volatile></ecc_errors>
<power_readings><power_draw>72.10 W</power_draw><power_limit>700.00 W</power_limit></power_readings>
</gpu></nvidia_smi_log>"""
    (gpu,) = nvidia.parse_query_xml(xml).gpus
    assert (gpu.power_w, gpu.power_limit_w) == (pytest.approx(72.1), 700)
    assert (gpu.ecc_errors_corrected, gpu.ecc_errors_uncorrected) == (4, 1)
    assert gpu.memory_total_mib == 81559


def test_not_supported_values_become_none():
    (gpu,) = nvidia.parse_query_csv(
        "0, NVIDIA H100, GPU-x, 00000000:18:00.0, 535.1, 81559, 1, [N/A], 30, [Not Supported], 300, [N/A]\n"
    ).gpus
    assert gpu.utilization_pct is None
    assert gpu.power_w is None
    assert gpu.ecc_errors_uncorrected is None


def test_errors_instead_of_xml_are_explained():
    with pytest.raises(ExecutionError, match="version mismatch"):
        nvidia.parse_query_xml("Failed to initialize NVML: Driver/library version mismatch\n")


def test_csv_with_wrong_column_count_is_explained():
    with pytest.raises(ExecutionError, match="expected 12"):
        nvidia.parse_query_csv("0, NVIDIA H200\n")


def test_nvswitch_fabric_state(nvidia_fixture):
    gpus = nvidia.parse_query_xml(nvidia_fixture("nvidia-smi-q.xml")).gpus
    assert [(g.fabric_state, g.fabric_status) for g in gpus] == [("Completed", "Success")] * 2
