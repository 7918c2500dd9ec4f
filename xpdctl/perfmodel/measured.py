"""Corrections from ``xpdctl bench`` measurements: the model's predictions scaled to what was seen.

A bench run records the deployment it measured (``Option.signature()``) and, per grid point, median
TTFT and TPOT. For each measured deployment we take the geometric mean of measured/predicted TTFT
over its points, keyed by the prefill side (hardware, TP, KV path), and of measured TPOT/predicted
ITL, keyed by the decode side (hardware, TP, KV path). An option whose prefill or decode side was
measured gets that side corrected at every workload; the rest stay model-only. Measuring the
cross-vendor cluster thus also corrects other options with the same H100 prefill or MI300X decode.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from xpdctl.errors import InputError


@dataclass(frozen=True)
class MeasuredPoint:
    signature: dict
    isl: int
    osl: int
    concurrency: int
    ttft_s: float
    tpot_s: float


@dataclass
class Corrections:
    ttft: dict[tuple, float] = field(default_factory=dict)
    itl: dict[tuple, float] = field(default_factory=dict)
    counts: dict[tuple, int] = field(default_factory=dict)
    # key -> (measured, model-only) geomean seconds over its points: what the factor is the ratio of.
    values: dict[tuple, tuple[float, float]] = field(default_factory=dict)

    def ttft_factor(self, signature: dict) -> float | None:
        return self.ttft.get(prefill_key(signature))

    def itl_factor(self, signature: dict) -> float | None:
        return self.itl.get(decode_key(signature))

    def factors(self, signature: dict) -> dict[str, tuple[float, int, float, float]]:
        """side -> (measured/model factor, points behind it, measured s, model s), for the sides measured."""
        out = {}
        for side, key, table in (("prefill TTFT", prefill_key(signature), self.ttft), ("decode ITL", decode_key(signature), self.itl)):
            if key in table:
                out[side] = (table[key], self.counts[key], *self.values[key])
        return out


def prefill_key(sig: dict) -> tuple:
    return ("prefill", sig["prefill"]["hardware"], sig["prefill"]["tp"], sig["kv_path"])


def decode_key(sig: dict) -> tuple:
    return ("decode", sig["decode"]["hardware"], sig["decode"]["tp"], sig["kv_path"])


def _result_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.rglob("results.json"))
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such bench result file or folder; pass a folder written by `xpdctl bench`")


def load_measurements(paths: list[Path]) -> tuple[list[MeasuredPoint], list[str]]:
    """The measured points of bench results, and a note for each run that is not used and why.

    Only runs of real endpoints tied to a deployment count: a simulator's numbers come from this
    model (never a measurement), a run without a recorded engine cannot be told apart from one, and a
    run of a bare URL has no deployment to correct (``bench -i INVENTORY --url URL`` ties it).
    """
    points, notes = [], []
    for path in paths:
        for file in _result_files(path):
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as exc:
                raise InputError(f"{file}: not a bench result ({exc}); pass results.json written by `xpdctl bench`") from exc
            for run in data.get("runs", []):
                what = f"{file}: run {run.get('label', '?')!r}"
                engine = run.get("engine")
                if engine == "simulator":
                    notes.append(f"{what} is simulated (xpdctl sim, time scale {run.get('time_scale') or 1:g}): "
                                 "not a measurement, not used")
                    continue
                if engine != "endpoint":
                    notes.append(f"{what} does not record which engine produced it (written by an older xpdctl): "
                                 "not used; run bench again")
                    continue
                signature = run.get("deployment")
                if not signature:
                    notes.append(f"{what} measured {run.get('url')} with no deployment tied to it: not used; "
                                 "run `xpdctl bench -i INVENTORY --url URL` so the pools it measured are recorded")
                    continue
                for p in run.get("points", []):
                    m = p["metrics"]
                    if not m.get("completed"):
                        continue
                    points.append(MeasuredPoint(signature, p["isl"], p["osl"], p["concurrency"],
                                                m["median_ttft_ms"] / 1000, m["median_tpot_ms"] / 1000))
    return points, notes


def fit(points: list[MeasuredPoint], predict) -> Corrections:
    """``predict(signature, isl, osl, concurrency)`` -> model-only Prediction (or None if unknown)."""
    pairs: dict[tuple, list[tuple[float, float]]] = defaultdict(list)  # key -> [(measured s, model s)]
    for p in points:
        pred = predict(p.signature, p.isl, p.osl, p.concurrency)
        if pred is None:
            continue
        if p.ttft_s > 0 and pred.ttft_s > 0:
            pairs[prefill_key(p.signature)].append((p.ttft_s, pred.ttft_s))
        if p.tpot_s > 0 and pred.itl_s > 0:
            pairs[decode_key(p.signature)].append((p.tpot_s, pred.itl_s))
    out = Corrections()
    for key, values in pairs.items():
        measured = math.exp(sum(math.log(m) for m, _ in values) / len(values))
        model = math.exp(sum(math.log(m) for _, m in values) / len(values))
        target = out.ttft if key[0] == "prefill" else out.itl
        target[key] = measured / model
        out.counts[key] = len(values)
        out.values[key] = (measured, model)
    return out
