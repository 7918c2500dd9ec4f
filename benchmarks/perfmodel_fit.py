"""The least-squares fit behind the prefill constants of xpdctl/perfmodel/calibration.py.

    .venv/bin/python benchmarks/perfmodel_fit.py

Sweeps prefill_chunk_tokens, prefill_memory_efficiency and prefill_compute_efficiency_per_sqrt_kb
and scores each by the squared log error against the report's 8K/1K table (E2EL of both
configurations, and their ratio counted twice). Prints the best few: the calibration's defaults
are the best row.
"""

from __future__ import annotations

import itertools
import math

from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.queueing import Deployment, Workload, predict
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.specs import hardware, model_spec

# Concurrency -> (cross E2EL s, single E2EL s): the report's "ISL 8192 / OSL 1024" table.
# The comparison is what advise decides on: its error counts this many times the E2ELs'.
RATIO_WEIGHT = 4

REPORT_8K_1K = {1: (6.52, 6.02), 4: (9.00, 7.60), 8: (11.72, 9.65), 16: (17.33, 14.62), 32: (24.93, 36.54),
                64: (47.76, 57.00), 128: (101.58, 119.45), 256: (190.52, 256.62)}


def score(cal: Calibration) -> tuple[float, list[float]]:
    gpt = model_spec("gpt-oss-120b")
    h100, mi300x = InstanceModel(hardware("H100"), 8, gpt, cal), InstanceModel(hardware("MI300X"), 8, gpt, cal)
    cross, single = Deployment(h100, 1, mi300x, 1, "host"), Deployment(mi300x, 1, mi300x, 1, "device")
    err, ratios = 0.0, []
    for c, (rc, rs) in REPORT_8K_1K.items():
        work = Workload(isl=8192, osl=1024, concurrency=c)
        pc, ps = predict(cross, work).e2el_s, predict(single, work).e2el_s
        err += math.log(pc / rc) ** 2 + math.log(ps / rs) ** 2 + RATIO_WEIGHT * math.log((pc / ps) / (rc / rs)) ** 2
        ratios.append(round(pc / ps, 2))
    return err, ratios


def main() -> None:
    rows = []
    for chunk, mem, comp in itertools.product([512, 665, 1024], [0.008, 0.012, 0.017, 0.025], [0.0008, 0.0012, 0.0016, 0.002]):
        cal = Calibration(prefill_chunk_tokens=chunk, prefill_memory_efficiency=mem, prefill_compute_efficiency_per_sqrt_kb=comp)
        err, ratios = score(cal)
        rows.append((err, chunk, mem, comp, ratios))
    rows.sort()
    print(f"{'error':>7} {'chunk':>5} {'mem eff':>7} {'comp/sqrtKB':>11}  E2EL ratios cross/single at " + ",".join(map(str, REPORT_8K_1K)))
    for err, chunk, mem, comp, ratios in rows[:6]:
        print(f"{err:7.3f} {chunk:5d} {mem:7.3f} {comp:11.4f}  {ratios}")


if __name__ == "__main__":
    main()
