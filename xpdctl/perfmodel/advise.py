"""Rank an inventory's options for a set of workloads, with the reasons.

Each option is modelled at each workload (:mod:`xpdctl.perfmodel.queueing`), corrected by bench
measurements where they exist (:mod:`xpdctl.perfmodel.measured`), and scored by the geometric mean
of the objective over the workloads. Reasons name what limits each phase, so a person can check
the model's story against what they know of their hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from xpdctl.inventory.schema import Inventory
from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.measured import Corrections, MeasuredPoint, fit
from xpdctl.perfmodel.options import Option, PoolChoice, engine_hosts, enumerate_options
from xpdctl.perfmodel.queueing import Prediction, Workload, predict
from xpdctl.perfmodel.specs import ModelSpec, hardware_profiles

OBJECTIVES = {"e2el": False, "ttft": False, "itl": False, "tps": True}  # name -> higher is better


@dataclass(frozen=True)
class Outcome:
    workload: Workload
    prediction: Prediction  # the model alone
    ttft_s: float
    itl_s: float
    e2el_s: float
    tps: float
    corrected: tuple[str, ...] = ()  # which sides bench measurements corrected

    def value(self, objective: str) -> float:
        return {"e2el": self.e2el_s, "ttft": self.ttft_s, "itl": self.itl_s, "tps": self.tps}[objective]


@dataclass(frozen=True)
class Ranked:
    rank: int
    option: Option
    score: float
    outcomes: tuple[Outcome, ...]
    reasons: tuple[str, ...]
    gpus: int


@dataclass(frozen=True)
class Advice:
    objective: str
    workloads: tuple[Workload, ...]
    ranked: tuple[Ranked, ...]
    notes: tuple[str, ...]


class Modeller:
    """Predictions for options of one inventory, with bench corrections applied."""

    def __init__(self, inv: Inventory, model: ModelSpec, cal: Calibration, measured: list[MeasuredPoint] = ()):
        self.inv, self.model, self.cal = inv, model, cal
        self.hardware = hardware_profiles()
        self.hybrid = inv.kv.hybrid_kv_cache_manager != "off"
        self.nics = {h.host.name: len(h.host.nics) or 1 for h in engine_hosts(inv)[0]}
        self.corrections: Corrections = fit(list(measured), self._predict_signature)

    def _nics(self, option: Option) -> int:
        return self.nics.get(option.decode.hosts[0], 1)

    def model_only(self, option: Option, work: Workload) -> Prediction:
        dep = option.deployment(self.model, self.cal, self.hardware, work.isl, self._nics(option), self.hybrid)
        return predict(dep, work)

    def _predict_signature(self, sig: dict, isl: int, osl: int, concurrency: int) -> Prediction | None:
        try:
            p, d = sig["prefill"], sig["decode"]
            if p["hardware"] not in self.hardware or d["hardware"] not in self.hardware:
                return None
            option = Option(PoolChoice(("measured",), p["hardware"], p["tp"], p["instances"]),
                            PoolChoice(("measured",), d["hardware"], d["tp"], d["instances"]),
                            sig["kv_path"], sig.get("threshold"))
        except (KeyError, TypeError):
            return None
        return self.model_only(option, Workload(isl=isl, osl=osl, concurrency=concurrency))

    def outcome(self, option: Option, work: Workload) -> Outcome:
        pred = self.model_only(option, work)
        sig = option.signature()
        ft, fi = self.corrections.ttft_factor(sig), self.corrections.itl_factor(sig)
        ttft, itl = pred.ttft_s * (ft or 1.0), pred.itl_s * (fi or 1.0)
        e2el = ttft + (work.osl - 1) * itl
        rate = work.concurrency / e2el if work.request_rate is None else min(work.request_rate, work.concurrency / e2el)
        corrected = tuple(name for name, f in (("prefill", ft), ("decode", fi)) if f is not None)
        return Outcome(work, pred, ttft, itl, e2el, rate * (work.isl + work.osl), corrected)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(max(v, 1e-12)) for v in values) / len(values))


def thresholds_for(workloads: list[Workload]) -> list[int]:
    """Conditional-disagg thresholds worth trying: just above each distinct prompt length."""
    return sorted({w.isl + 1 for w in workloads})


def reasons(option: Option, out: Outcome, cal: Calibration, modeller: Modeller) -> list[str]:
    p = out.prediction
    w = out.workload
    lines = []
    tag = f"[{w.isl}/{w.osl} c{w.concurrency}]"
    if option.threshold is not None and w.isl < option.threshold:
        lines.append(f"{tag} prompts under {option.threshold} tokens are prefilled on the decode instances "
                     f"(conditional disagg): no KV transfer, but prefill takes {p.prefill_utilization:.0%} of their time")
    else:
        wait = f" + {p.prefill_wait_s * 1000:.0f} ms sharing it" if p.prefill_wait_s > 0.05 * p.prefill_s else ""
        lines.append(f"{tag} prefill on {option.prefill.hardware} TP{option.prefill.tp}: {p.prefill_s * 1000:.0f} ms alone{wait}; "
                     f"steps {p.prefill_step.bound}-bound at this load, {p.prefill_utilization:.0%} busy")
        how = "through host memory" if option.path == "host" else "GPUDirect RDMA"
        lines.append(f"{tag} KV {p.kv_bytes / 1e6:.0f} MB {how}: {p.transfer_s * 1000:.0f} ms")
    line = (f"{tag} decode on {option.decode.hardware} TP{option.decode.tp}: batch {p.decode_batch:.1f} per instance, "
            f"ITL {p.itl_s * 1000:.1f} ms, step {p.decode_step.bound}-bound")
    resident = p.decode_batch * modeller.model.kv_bytes(w.isl + w.osl / 2, modeller.hybrid)
    if p.congestion > 1.005:
        line += (f"; KV bursts on the device path slow decode x{p.congestion:.2f} (resident KV {resident / 1e9:.1f} GB "
                 f"> {cal.congestion_saturation_gb:g} GB)")
    elif option.path == "host" and kvpath.congestion_pressure(resident, "device", cal) > 0:
        line += "; host staging paces KV into decode, so no burst congestion"
    lines.append(line)
    if out.corrected:
        lines.append(f"{tag} corrected by bench measurements of the {' and '.join(out.corrected)} side")
    return lines


def advise(inv: Inventory, model: ModelSpec, workloads: list[Workload], cal: Calibration,
           measured: list[MeasuredPoint] = (), objective: str = "e2el", limit: int | None = None) -> Advice:
    modeller = Modeller(inv, model, cal, list(measured))
    options = enumerate_options(inv, model, cal, thresholds_for(workloads))
    higher = OBJECTIVES[objective]
    scored = []
    for option in options:
        outcomes = tuple(modeller.outcome(option, w) for w in workloads)
        score = _geomean([o.value(objective) for o in outcomes])
        gpus = option.prefill.instances * option.prefill.tp + option.decode.instances * option.decode.tp
        scored.append((score, gpus, option, outcomes))
    scored.sort(key=lambda s: ((-s[0] if higher else s[0]), s[1], s[2].key()))
    ranked = []
    for i, (score, gpus, option, outcomes) in enumerate(scored[:limit] if limit else scored):
        lines = [r for o in outcomes for r in reasons(option, o, cal, modeller)]
        ranked.append(Ranked(i + 1, option, score, outcomes, tuple(lines), gpus))
    if ranked and len(scored) > 1:
        best, second = scored[0], scored[1]
        gain = (best[0] / second[0] - 1) if higher else (1 - best[0] / second[0])
        first = ranked[0]
        ranked[0] = replace(first, reasons=first.reasons + (f"ahead of the next option ({second[2].key()}) by {gain:.1%} "
                                                              f"geomean {objective}",))
    notes = list(engine_hosts(inv)[1])
    for key, n in sorted(modeller.corrections.counts.items()):
        factor = (modeller.corrections.ttft if key[0] == "prefill" else modeller.corrections.itl)[key]
        notes.append(f"bench: {n} points correct {key[0]} on {key[1]} TP{key[2]} (kv {key[3]}) by x{factor:.2f}")
    return Advice(objective, tuple(workloads), tuple(ranked), tuple(notes))
