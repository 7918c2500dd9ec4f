"""Held-out predictions of the technical report: the bounds issue 16 fixes, on points the fit never saw.

Each of the report's four ISL/OSL scenarios is predicted by constants fitted to the other three
(xpdctl/perfmodel/crossval.py; benchmarks/perfmodel_crossval.py prints the same run as a table). No
test here asserts a point the constants were fitted to.
"""

from __future__ import annotations

import math

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.perfmodel.advise import MODEL_ERROR
from xpdctl.perfmodel.calibration import DEFAULT, FITTED, provenance
from xpdctl.perfmodel.crossval import leave_one_scenario_out, report_deployments, report_points, scenarios, summarize
from xpdctl.perfmodel.options import current_option


@pytest.fixture(scope="module")
def folds():
    return leave_one_scenario_out()


def test_each_fold_predicts_a_scenario_it_was_not_fitted_to(folds):
    assert [f.held_out for f in folds] == scenarios() == ["1024/1024", "1024/8192", "8192/1024", "8192/8192"]
    for f in folds:
        assert {r.point.scenario for r in f.results} == {f.held_out}
    assert sum(len(f.results) for f in folds) == len(report_points()) == 23


def test_held_out_median_ratio_errors_within_the_issues_bound(folds):
    s = summarize(r for f in folds for r in f.results)
    assert s.median_e2el_ratio_error <= 0.10
    assert s.median_tps_ratio_error <= 0.10


@pytest.mark.xfail(strict=True, reason="not met: wrong winner at 2 of the 24 held-out ratios the report decides (1024/8192 c8 TPS, "
                                       "8192/1024 c16 E2EL); why, and what measurement would settle it: docs/performance.md")
def test_held_out_winner_wherever_the_report_is_at_least_10_percent_from_parity(folds):
    s = summarize(r for f in folds for r in f.results)
    assert s.wrong_winners == ()


def test_advise_shows_no_smaller_error_than_the_held_out_one(folds):
    s = summarize(r for f in folds for r in f.results)
    assert MODEL_ERROR["e2el"] >= round(s.median_e2el_error, 2)
    assert MODEL_ERROR["tps"] >= round(s.median_tps_error, 2)
    assert MODEL_ERROR["ratio"] >= round(max(s.median_e2el_ratio_error, s.median_tps_ratio_error), 3)


def test_every_constant_says_what_kind_of_figure_it_is():
    kinds = {kind for _, _, kind, _ in provenance()}
    assert kinds <= {"fitted", "measured", "source", "assumed"}
    assert all(what for _, _, _, what in provenance())
    assert set(FITTED) == {name for name, _, kind, _ in provenance() if kind == "fitted"} and len(FITTED) == 7


def test_the_report_deployments_are_the_shipped_inventories():
    cross, single = report_deployments(DEFAULT)
    for name, dep in (("lab.yaml", cross), ("lab-single-vendor.yaml", single)):
        option = current_option(load_inventory(data_dir("inventory") / name).inventory)
        assert (option.prefill.hardware, option.prefill.tp, option.prefill.instances) == (dep.prefill.hw.name, dep.prefill.tp, 1)
        assert (option.decode.hardware, option.decode.tp, option.decode.instances) == (dep.decode.hw.name, dep.decode.tp, 1)
        assert option.path == dep.path
    assert math.isclose(cross.nic_gbps, 200)
