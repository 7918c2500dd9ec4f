"""Print the performance model's cross/single ratios beside the technical report's measured ones.

    .venv/bin/python benchmarks/perfmodel_vs_report.py

The model sees only the hardware table, the model shape and the calibration constants
(xpdctl/perfmodel/calibration.py); the report's numbers below are for comparison, never an input.
"""

from __future__ import annotations

import math

from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.options import current_option
from xpdctl.perfmodel.queueing import Workload, predict
from xpdctl.perfmodel.specs import hardware_profiles, model_spec

# (isl, osl) -> {concurrency: (E2EL ratio, TPS ratio)}, from the report's four tables (cross / single).
REPORT = {
    (1024, 1024): {1: (1.00, 1.01), 4: (1.00, 0.94), 8: (1.00, 0.98), 16: (0.98, 1.02), 32: (1.02, 1.02)},
    (1024, 8192): {1: (1.02, 0.98), 4: (0.92, 1.10), 8: (0.90, 1.11), 16: (1.02, 1.10), 32: (0.71, 1.46)},
    (8192, 1024): {1: (1.08, 0.93), 4: (1.18, 0.82), 8: (1.21, 0.86), 16: (1.19, 0.92), 32: (0.68, 1.42),
                   64: (0.84, 1.19), 128: (0.85, 1.17), 256: (0.74, 1.34)},
    (8192, 8192): {1: (1.10, 0.91), 4: (0.98, 0.96), 8: (0.79, 1.35), 16: (0.57, 1.67), 32: (0.66, 1.57)},
}


def _deployment(name: str, isl: int):
    inv = load_inventory(data_dir("inventory") / name).inventory
    return current_option(inv).deployment(model_spec(inv.model.name), DEFAULT, hardware_profiles(), isl)


def main() -> None:
    logs = {"model": [], "report": []}
    for (isl, osl), rows in REPORT.items():
        print(f"\nISL {isl} / OSL {osl}")
        print(f"{'CON':>4} | {'E2EL ratio model':>16} {'report':>7} | {'TPS ratio model':>15} {'report':>7} | "
              f"{'cross TTFT ms':>13} {'single TTFT ms':>14} {'single congestion':>17}")
        for c, (e_rep, t_rep) in rows.items():
            work = Workload(isl=isl, osl=osl, concurrency=c)
            cross, single = predict(_deployment("lab.yaml", isl), work), predict(_deployment("lab-single-vendor.yaml", isl), work)
            e, t = cross.e2el_s / single.e2el_s, cross.tps / single.tps
            logs["model"].append(math.log(e))
            logs["report"].append(math.log(e_rep))
            print(f"{c:>4} | {e:>16.2f} {e_rep:>7.2f} | {t:>15.2f} {t_rep:>7.2f} | {cross.ttft_s * 1000:>13.0f} "
                  f"{single.ttft_s * 1000:>14.0f} {single.congestion:>17.2f}")
    for who, values in logs.items():
        print(f"geomean E2EL ratio over the grid, {who}: {math.exp(sum(values) / len(values)):.2f}")


if __name__ == "__main__":
    main()
