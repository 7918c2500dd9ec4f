"""Fit the model's fitted constants to the technical report's tables, and cross-validate the fit.

The report (``report.yaml``) measured two deployments at 23 points over four ISL/OSL scenarios.
:func:`fit` chooses the constants :data:`calibration.FITTED` names by coordinate descent on the log
errors of what ``advise`` decides on (cross/single ratios of E2EL and TPS, weighted 4x) plus the two
deployments' E2ELs. :func:`leave_one_scenario_out` fits on three scenarios and predicts the fourth,
for each of the four: the held-out errors are the model's measured error, the figure ``advise``
shows next to its predictions and docs/performance.md tabulates (benchmarks/perfmodel_crossval.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from xpdctl.perfmodel.calibration import DEFAULT, FITTED, Calibration
from xpdctl.perfmodel.queueing import Deployment, Prediction, Workload, predict
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.specs import hardware, model_spec

RATIO_WEIGHT = 4.0
# Where every fit starts: round figures chosen before looking at any fold, the same for all folds
# (a fit started from the shipped defaults would carry the held-out scenario in through the start).
START = DEFAULT.model_copy(update={
    "prefill_compute_efficiency_per_sqrt_kb": 0.001, "memory_efficiency": 0.3,
    "per_sequence_step_ms": 0.1, "prefill_chunk_tokens": 512, "congestion_saturation_gb": 2.0,
    "congestion_max_device": 0.5, "congestion_max_host": 0.5,
})
# A report ratio at least this far from 1 names a winner the model must also name.
WINNER_MARGIN = 0.10


@dataclass(frozen=True)
class ReportPoint:
    isl: int
    osl: int
    concurrency: int
    cross_e2el_s: float
    single_e2el_s: float
    cross_tps: float
    single_tps: float

    @property
    def scenario(self) -> str:
        return f"{self.isl}/{self.osl}"

    @property
    def e2el_ratio(self) -> float:
        return self.cross_e2el_s / self.single_e2el_s

    @property
    def tps_ratio(self) -> float:
        return self.cross_tps / self.single_tps


@dataclass(frozen=True)
class PointResult:
    point: ReportPoint
    cross: Prediction
    single: Prediction

    @property
    def e2el_ratio(self) -> float:
        return self.cross.e2el_s / self.single.e2el_s

    @property
    def tps_ratio(self) -> float:
        return self.cross.tps / self.single.tps

    @property
    def e2el_ratio_error(self) -> float:
        """log(predicted ratio / report ratio)."""
        return math.log(self.e2el_ratio / self.point.e2el_ratio)

    @property
    def tps_ratio_error(self) -> float:
        return math.log(self.tps_ratio / self.point.tps_ratio)

    @property
    def e2el_errors(self) -> tuple[float, float]:
        """log(predicted / report) E2EL of cross and single."""
        return math.log(self.cross.e2el_s / self.point.cross_e2el_s), math.log(self.single.e2el_s / self.point.single_e2el_s)

    @property
    def tps_errors(self) -> tuple[float, float]:
        return math.log(self.cross.tps / self.point.cross_tps), math.log(self.single.tps / self.point.single_tps)

    def wrong_winner(self) -> list[str]:
        """The metrics whose report ratio names a winner (>= 10% from 1) that the prediction does not."""
        wrong = []
        for name, rep, pred in (("E2EL", self.point.e2el_ratio, self.e2el_ratio), ("TPS", self.point.tps_ratio, self.tps_ratio)):
            if abs(rep - 1) >= WINNER_MARGIN - 1e-9 and (rep - 1) * (pred - 1) <= 0:
                wrong.append(name)
        return wrong


@dataclass(frozen=True)
class Fold:
    held_out: str  # scenario, e.g. "8192/1024"
    calibration: Calibration  # fitted without it
    results: tuple[PointResult, ...]  # its points, predicted


@cache
def report_points() -> tuple[ReportPoint, ...]:
    data = yaml.safe_load((Path(__file__).with_name("report.yaml")).read_text())
    points = []
    for scenario, rows in data["scenarios"].items():
        isl, osl = (int(v) for v in scenario.split("/"))
        points.extend(ReportPoint(isl, osl, *row) for row in rows)
    return tuple(points)


def report_deployments(cal: Calibration) -> tuple[Deployment, Deployment]:
    """The report's two deployments: H100 TP8 -> MI300X TP8 through host memory; MI300X -> MI300X GPUDirect.

    One 200 Gb/s NIC per node (the report's ConnectX-6); the same pools as inventory/lab.yaml and
    inventory/lab-single-vendor.yaml.
    """
    gpt = model_spec("gpt-oss-120b")
    h100, mi300x = InstanceModel(hardware("H100-SXM"), 8, gpt, cal), InstanceModel(hardware("MI300X"), 8, gpt, cal)
    return Deployment(h100, 1, mi300x, 1, "host", 200.0), Deployment(mi300x, 1, mi300x, 1, "device", 200.0)


def predict_points(cal: Calibration, points) -> list[PointResult]:
    cross, single = report_deployments(cal)
    out = []
    for p in points:
        work = Workload(isl=p.isl, osl=p.osl, concurrency=p.concurrency, request_rate=8.0)
        out.append(PointResult(p, predict(cross, work), predict(single, work)))
    return out


def loss(cal: Calibration, points) -> float:
    total = 0.0
    for r in predict_points(cal, points):
        total += RATIO_WEIGHT * (r.e2el_ratio_error ** 2 + r.tps_ratio_error ** 2) + sum(e * e for e in r.e2el_errors)
    return total


def fit(points, start: Calibration = START, names: tuple[str, ...] = FITTED,
        steps: tuple[float, ...] = (2.0, 1.4, 1.15)) -> Calibration:
    """Coordinate descent in log space: each constant x or / each step while that lowers the loss."""
    best, best_loss = start, loss(start, points)
    for step in steps:
        improved = True
        while improved:
            improved = False
            for name in names:
                value = getattr(best, name)
                for factor in (step, 1 / step):
                    new = value * factor if value else (0.5 if factor > 1 else 0.0)
                    if isinstance(value, int) and not isinstance(value, bool):
                        new = max(1, round(new))
                    try:
                        cand = best.model_copy(update={name: new})
                        Calibration.model_validate(cand.model_dump())
                    except ValueError:
                        continue
                    cand_loss = loss(cand, points)
                    if cand_loss < best_loss - 1e-9:
                        best, best_loss, improved = cand, cand_loss, True
                        break
    return best


def scenarios() -> list[str]:
    return list(dict.fromkeys(p.scenario for p in report_points()))


def leave_one_scenario_out(start: Calibration = START) -> list[Fold]:
    folds = []
    for held in scenarios():
        train = [p for p in report_points() if p.scenario != held]
        test = [p for p in report_points() if p.scenario == held]
        cal = fit(train, start)
        folds.append(Fold(held, cal, tuple(predict_points(cal, test))))
    return folds


@dataclass(frozen=True)
class Summary:
    points: int
    median_e2el_ratio_error: float  # median |log(pred ratio / report ratio)|
    median_tps_ratio_error: float
    median_e2el_error: float  # median |log(pred / report)| of both configurations' E2EL
    median_tps_error: float
    wrong_winners: tuple[str, ...]  # "8192/1024 c16 E2EL", ...


def summarize(results) -> Summary:
    results = list(results)
    wrong = tuple(f"{r.point.scenario} c{r.point.concurrency} {m}" for r in results for m in r.wrong_winner())
    return Summary(
        len(results),
        statistics.median(abs(r.e2el_ratio_error) for r in results),
        statistics.median(abs(r.tps_ratio_error) for r in results),
        statistics.median(abs(e) for r in results for e in r.e2el_errors),
        statistics.median(abs(e) for r in results for e in r.tps_errors),
        wrong,
    )
