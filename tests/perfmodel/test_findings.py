"""The report's qualitative findings, reproduced by the model from the hardware table alone.

Each test names the table of the report (seed/000_e5bbece680bb3a3c.txt, section "Results") it checks.
"Cross" is inventory/lab.yaml (H100 prefill, MI300X decode, KV through host memory); "single" is
inventory/lab-single-vendor.yaml (MI300X prefill and decode, GPUDirect). Ratios are cross/single as in
the report: E2EL ratio < 1 and TPS ratio > 1 mean cross-vendor is ahead. No bench data is used.
"""

from __future__ import annotations

import math

import pytest


def test_the_shipped_inventories_are_the_reports_two_deployments(report_ratio):
    cross, single = report_ratio(8192, 1024, 1)
    # Host staging moves the 307 MB of an 8K prompt at ~4 GB/s; GPUDirect at ~22 GB/s.
    assert cross.kv_bytes == pytest.approx(307e6, rel=0.01)
    assert cross.transfer_s > 4 * single.transfer_s
    assert single.congestion == cross.congestion == 1.0


@pytest.mark.parametrize("concurrency", [1, 4, 8, 16, 32])
def test_near_parity_at_1k_1k(report_ratio, concurrency):
    """Table "ISL 1024 / OSL 1024": E2EL ratio 0.98-1.02 and TPS ratio 0.94-1.02 at every concurrency
    (geomean 1.00): a 1K prompt's prefill and 42 MB of KV are small next to 1,024 decode steps, and
    decode runs on MI300X in both."""
    cross, single = report_ratio(1024, 1024, concurrency)
    assert cross.e2el_s / single.e2el_s == pytest.approx(1.0, abs=0.03)
    assert cross.tps / single.tps == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("concurrency", [8, 16, 32])
def test_cross_vendor_ahead_at_8k_8k_from_concurrency_8(report_ratio, concurrency):
    """Table "ISL 8192 / OSL 8192": E2EL ratio 0.79 / 0.57 / 0.66 and TPS ratio 1.35 / 1.67 / 1.57 at
    concurrency 8 / 16 / 32: long sequences resident at decode congest the device path."""
    cross, single = report_ratio(8192, 8192, concurrency)
    assert cross.e2el_s / single.e2el_s < 0.95
    assert cross.tps / single.tps > 1.05
    assert single.congestion > 1.0 and cross.congestion == 1.0


def test_no_cross_vendor_lead_at_8k_8k_concurrency_1(report_ratio):
    """Same table, concurrency 1: ratio 1.10 (single ahead). With one request in flight nothing is
    resident beside it to congest decode; the lone prompt's bandwidth-bound prefill chunks and the
    host-staged transfer both favour the MI300X pair."""
    cross, single = report_ratio(8192, 8192, 1)
    assert cross.e2el_s >= single.e2el_s


@pytest.mark.parametrize("concurrency", [1, 4, 8])
def test_single_vendor_ahead_at_8k_1k_low_concurrency(report_ratio, concurrency):
    """Table "ISL 8192 / OSL 1024": E2EL ratio 1.08 / 1.18 / 1.21 and TPS ratio 0.93 / 0.82 / 0.86 at
    concurrency 1 / 4 / 8. Few prompts share a prefill step, so each chunk rereads the experts and
    the MI300X's bandwidth wins; the cross-vendor request also pays the host-staged transfer."""
    cross, single = report_ratio(8192, 1024, concurrency)
    assert cross.e2el_s / single.e2el_s > 1.0
    assert cross.tps / single.tps < 1.0
    assert cross.ttft_s > single.ttft_s


@pytest.mark.parametrize("concurrency", [32, 64, 128, 256])
def test_cross_vendor_ahead_at_8k_1k_high_concurrency(report_ratio, concurrency):
    """Same table, concurrency 32-256: E2EL ratio 0.68-0.85, TPS ratio 1.17-1.42 (the crossover). Prefill
    saturates; full steps are compute-bound, where the H100's sustained compute serves more prompts."""
    cross, single = report_ratio(8192, 1024, concurrency)
    assert cross.prefill_utilization > 0.9 and single.prefill_utilization > 0.9
    assert cross.e2el_s / single.e2el_s < 1.0
    assert cross.tps / single.tps > 1.0


def test_long_outputs_amplify_the_congestion_at_1k_8k(report_ratio):
    """Table "ISL 1024 / OSL 8192": E2EL ratio 0.71, TPS ratio 1.46 at concurrency 32, near parity at 1."""
    cross, single = report_ratio(1024, 8192, 32)
    assert cross.e2el_s / single.e2el_s < 0.9
    cross1, single1 = report_ratio(1024, 8192, 1)
    assert cross1.e2el_s / single1.e2el_s == pytest.approx(1.0, abs=0.03)


def test_geomean_over_the_reports_grid_favours_cross_vendor(report_ratio):
    """Key findings: geomean E2EL ratio 0.92 and TPS ratio 1.10 over all four scenarios."""
    grid = [(1024, 1024, c) for c in (1, 4, 8, 16, 32)] + [(1024, 8192, c) for c in (1, 4, 8, 16, 32)]
    grid += [(8192, 1024, c) for c in (1, 4, 8, 16, 32, 64, 128, 256)] + [(8192, 8192, c) for c in (1, 4, 8, 16, 32)]
    e2el, tps = [], []
    for point in grid:
        cross, single = report_ratio(*point)
        e2el.append(math.log(cross.e2el_s / single.e2el_s))
        tps.append(math.log(cross.tps / single.tps))
    assert math.exp(sum(e2el) / len(e2el)) < 1.0
    assert math.exp(sum(tps) / len(tps)) > 1.0


@pytest.mark.parametrize(("workload", "expected"), [
    ("isl=1K,osl=1K,c=8", "parity"),     # table "ISL 1024 / OSL 1024", ratio 1.00
    ("isl=8K,osl=8K,c=16", "cross"),     # table "ISL 8192 / OSL 8192", ratio 0.57
    ("isl=8K,osl=1K,c=4", "single"),     # table "ISL 8192 / OSL 1024", ratio 1.18
])
def test_advise_ranks_the_reports_two_configurations_as_the_report_found(lab_data, write_inventory, workload, expected):
    """Through `advise` itself: on the report's three nodes (one H100, two MI300X), the option the report
    calls cross-vendor (H100 TP8 prefill -> one MI300X TP8 decode) against the one it calls single-vendor
    (MI300X TP8 prefill -> the other MI300X TP8 decode)."""
    from xpdctl.inventory import load_inventory
    from xpdctl.perfmodel.advise import advise
    from xpdctl.perfmodel.calibration import DEFAULT
    from xpdctl.perfmodel.specs import model_spec
    from xpdctl.perfmodel.workloads import parse_workload

    lab_data["hosts"].insert(2, {"name": "mi300x-02", "address": "10.0.0.22", "vendor": "amd",
                                 "gpu": {"model": "MI300X", "count": 8}, "nics": ["mlx5_0"]})
    inv = load_inventory(write_inventory(lab_data)).inventory
    ranked = advise(inv, model_spec(inv.model.name), [parse_workload(workload)], DEFAULT).ranked

    def pick(prefill_hosts, decode_hosts):
        return next(r for r in ranked if r.option.prefill.hosts == prefill_hosts and r.option.decode.hosts == decode_hosts
                    and r.option.prefill.tp == r.option.decode.tp == 8 and r.option.threshold is None)

    cross, single = pick(("h100-01",), ("mi300x-01",)), pick(("mi300x-01",), ("mi300x-02",))
    ratio = cross.score / single.score  # geomean E2EL: < 1 favours cross
    if expected == "parity":
        assert ratio == pytest.approx(1.0, abs=0.03)
    elif expected == "cross":
        assert ratio < 0.95 and cross.rank < single.rank
    else:
        assert ratio > 1.0 and single.rank < cross.rank
