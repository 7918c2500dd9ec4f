"""Leave-one-scenario-out cross-validation of the performance model against the technical report.

    .venv/bin/python benchmarks/perfmodel_crossval.py [--markdown]

For each of the report's four ISL/OSL scenarios: fit the constants calibration.FITTED names on the
other three (xpdctl/perfmodel/crossval.py), predict the held-out one, print per point the predicted
and reported cross/single ratios and E2EL/TPS, then the held-out summary and the full fit (all 23
points: the shipped defaults). Exits non-zero when a bound of issue 16 is missed: held-out median
|log(predicted ratio / report ratio)| <= 0.10 for E2EL and TPS, and the report's winner wherever its
ratio is at least 10% from 1. ``--markdown`` prints the tables docs/performance.md shows.
"""

from __future__ import annotations

import sys
import time

from xpdctl.perfmodel.calibration import DEFAULT, FITTED
from xpdctl.perfmodel.crossval import leave_one_scenario_out, predict_points, report_points, summarize

BOUND = 0.10


def _row(r, md: bool) -> str:
    p = r.point
    cells = [p.scenario, p.concurrency, f"{r.e2el_ratio:.2f}", f"{p.e2el_ratio:.2f}", f"{r.e2el_ratio_error:+.3f}",
             f"{r.tps_ratio:.2f}", f"{p.tps_ratio:.2f}", f"{r.tps_ratio_error:+.3f}",
             f"{r.cross.e2el_s:.1f}/{r.single.e2el_s:.1f}", f"{p.cross_e2el_s:.1f}/{p.single_e2el_s:.1f}",
             f"{r.cross.tps:.0f}/{r.single.tps:.0f}", f"{p.cross_tps:.0f}/{p.single_tps:.0f}",
             ",".join(r.wrong_winner()) or "-"]
    if md:
        return "| " + " | ".join(map(str, cells)) + " |"
    return " ".join(f"{c!s:>11}" for c in cells)


HEADER = ["ISL/OSL", "CON", "E2EL ratio", "report", "log err", "TPS ratio", "report", "log err",
          "E2EL c/s (s)", "report", "TPS c/s", "report", "wrong winner"]


def _summary_line(s) -> str:
    return (f"{s.points} points: median |log ratio error| E2EL {s.median_e2el_ratio_error:.3f}, TPS "
            f"{s.median_tps_ratio_error:.3f}; median |log error| of E2EL {s.median_e2el_error:.3f}, of TPS "
            f"{s.median_tps_error:.3f}; wrong winners: {', '.join(s.wrong_winners) or 'none'}")


def main() -> int:
    md = "--markdown" in sys.argv
    started = time.monotonic()
    folds = leave_one_scenario_out()
    held = [r for f in folds for r in f.results]
    if md:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
    else:
        print(" ".join(f"{h:>11}" for h in HEADER))
    for r in held:
        print(_row(r, md))
    print()
    for f in folds:
        fitted = ", ".join(f"{n}={getattr(f.calibration, n):.4g}" for n in FITTED)
        print(f"fitted without {f.held_out}: {fitted}")
    s = summarize(held)
    print(f"\nheld out (leave one scenario out), {_summary_line(s)}")
    full = summarize(predict_points(DEFAULT, report_points()))
    print(f"in sample (shipped defaults, fitted to all points), {_summary_line(full)}")
    print(f"{len(FITTED)} fitted constants; {time.monotonic() - started:.0f} s")
    missed = [f"median {name} ratio error {v:.3f} > {BOUND}" for name, v in
              (("E2EL", s.median_e2el_ratio_error), ("TPS", s.median_tps_ratio_error)) if v > BOUND]
    missed += [f"wrong winner at {w}" for w in s.wrong_winners]
    for m in missed:
        print(f"MISSED: {m}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
