"""Rank an inventory's options for a set of workloads, with the reasons and the model's error.

Each option is modelled at each workload (:mod:`xpdctl.perfmodel.queueing`), corrected by bench
measurements of real endpoints where they exist (:mod:`xpdctl.perfmodel.measured`), and scored by the
geometric mean of the objective over the workloads. Each E2EL and TPS carries the model's measured
error (held-out cross-validation against the technical report, :mod:`.crossval`); when the top two
options are closer than the model's error at comparing two deployments, advise says so and names the
bench run that would separate them. Reasons name what limits each phase, with the numbers the table shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from xpdctl.inventory.schema import Inventory
from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.measured import Corrections, MeasuredPoint, fit
from xpdctl.perfmodel.options import Option, PoolChoice, engine_hosts, enumerate_options
from xpdctl.perfmodel.queueing import Prediction, Workload, predict
from xpdctl.perfmodel.specs import ModelSpec, hardware_profiles

# The model's measured error: held-out median |log(predicted / report)| of leave-one-scenario-out
# cross-validation against the technical report (benchmarks/perfmodel_crossval.py; docs/performance.md):
# of one deployment's E2EL and TPS, and of the E2EL ratio of two deployments (what a ranking compares).
MODEL_ERROR = {"e2el": 0.19, "tps": 0.15, "ratio": 0.086}

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

    def band(self, metric: str) -> tuple[float, float] | None:
        """(low, high) of ``metric`` within the model's measured error; None where none was measured."""
        err = MODEL_ERROR.get(metric)
        if err is None:
            return None
        v = self.value(metric)
        return v * math.exp(-err), v * math.exp(err)


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
        self.assumed_nics = sorted(h.host.name for h in engine_hosts(inv)[0] if h.host.nic_gbps is None)
        self.inv, self.model, self.cal = inv, model, cal
        self.hardware = hardware_profiles()
        self.hybrid = inv.kv.hybrid_kv_cache_manager != "off"
        self.nic_gbps = {h.host.name: (len(h.host.nics) or 1) * (h.host.nic_gbps or cal.default_nic_gbps)
                         for h in engine_hosts(inv)[0]}
        self.corrections: Corrections = fit(list(measured), self._predict_signature)

    def _nic_gbps(self, option: Option) -> float | None:
        rates = [self.nic_gbps[h] for h in (option.prefill.hosts[0], option.decode.hosts[0]) if h in self.nic_gbps]
        return min(rates) if rates else None

    def model_only(self, option: Option, work: Workload) -> Prediction:
        dep = option.deployment(self.model, self.cal, self.hardware, work.isl, self._nic_gbps(option), self.hybrid)
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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def reasons(option: Option, out: Outcome, cal: Calibration, modeller: Modeller) -> list[str]:
    p = out.prediction
    w = out.workload
    lines = []
    tag = f"[{w.isl}/{w.osl} c{w.concurrency}]"
    low, high = out.band("e2el")
    tlow, thigh = out.band("tps")
    lines.append(f"{tag} E2EL {out.e2el_s:.2f} s ({low:.2f}-{high:.2f} within the model's error), TPS {out.tps:.0f} "
                 f"({tlow:.0f}-{thigh:.0f}), TTFT {_ms(out.ttft_s)}, ITL {out.itl_s * 1000:.1f} ms")
    if out.corrected:
        factors = modeller.corrections.factors(option.signature())
        shown = {"prefill TTFT": _ms, "decode ITL": lambda s: f"{s * 1000:.1f} ms"}  # as the table shows each
        lines.append(f"{tag} bench-corrected: " + "; ".join(
            f"{side} x{f:.2f} (measured {shown[side](meas)} / model {shown[side](mod)}, geomean of {n} points)"
            for side, (f, n, meas, mod) in factors.items())
            + f"; the model alone here: TTFT {_ms(p.ttft_s)}, ITL {p.itl_s * 1000:.1f} ms, E2EL {p.e2el_s:.2f} s")
    if option.threshold is not None and w.isl < option.threshold:
        lines.append(f"{tag} prompts under {option.threshold} tokens are prefilled on the decode instances "
                     f"(conditional disagg): no KV transfer, but prefill takes {p.prefill_utilization:.0%} of their time")
    else:
        wait = f" + {_ms(p.prefill_wait_s)} sharing it" if p.prefill_wait_s > 0.05 * p.prefill_s else ""
        lines.append(f"{tag} prefill on {option.prefill.hardware} TP{option.prefill.tp}: {_ms(p.prefill_s)} alone{wait}; "
                     f"steps {p.prefill_step.bound}-bound at this load, {p.prefill_utilization:.0%} busy")
        how = "through host memory" if option.path == "host" else "GPUDirect RDMA"
        queue = f" + {_ms(p.transfer_s - p.transfer.seconds)} queued" if p.transfer_s > 1.05 * p.transfer.seconds else ""
        lines.append(f"{tag} KV {p.kv_bytes / 1e6:.0f} MB {how}: {p.transfer.describe()}{queue}")
    # The ITL the table shows (bench-corrected where measured), the model's own beside it when they differ.
    itl = f"ITL {out.itl_s * 1000:.1f} ms" + (f" (model alone {p.itl_s * 1000:.1f} ms)" if "decode" in out.corrected else "")
    line = (f"{tag} decode on {option.decode.hardware} TP{option.decode.tp}: batch {p.decode_batch:.1f} per instance, "
            f"{itl}, step {p.decode_step.bound}-bound")
    if p.load_stall > 1.005:
        line += f"; synchronous KV loads hold decode x{p.load_stall:.2f}"
    if p.congestion > 1.005:
        resident = p.decode_batch * modeller.model.kv_bytes(w.isl + w.osl / 2, modeller.hybrid)
        line += (f"; KV bursts slow decode x{p.congestion:.2f} (resident KV {resident / 1e9:.1f} GB > "
                 f"{cal.congestion_saturation_gb:g} GB; fitted term)")
    lines.append(line)
    return lines


def _separating_bench(a: Ranked, b: Ranked, objective: str) -> str:
    """The workload where the two options' predictions differ most, as the bench run that would measure it."""
    i = max(range(len(a.outcomes)), key=lambda k: abs(math.log(a.outcomes[k].value(objective) / b.outcomes[k].value(objective))))
    w = a.outcomes[i].workload
    return (f"deploy each (advise --write FILE --pick {a.rank} / --pick {b.rank}, then up) and run "
            f"`xpdctl bench -i FILE --isl {w.isl} --osl {w.osl} --concurrency {w.concurrency}` on both")


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
    if len(ranked) > 1:
        first, second = ranked[0], ranked[1]
        gain = (first.score / second.score - 1) if higher else (1 - first.score / second.score)
        line = f"ahead of the next option ({second.option.key()}) by {gain:.1%} geomean {objective}"
        if abs(math.log(first.score / second.score)) < MODEL_ERROR["ratio"]:
            line += (f": equivalent within the model's error at comparing two deployments (+-{math.exp(MODEL_ERROR['ratio']) - 1:.0%}); "
                     f"to separate them, {_separating_bench(first, second, objective)}")
        ranked[0] = replace(first, reasons=first.reasons + (line,))
    notes = list(engine_hosts(inv)[1])
    if modeller.assumed_nics:
        notes.append(f"{', '.join(modeller.assumed_nics)}: no nic_gbps in the inventory; KV moves at an assumed "
                     f"{cal.default_nic_gbps:g} Gb/s per NIC")
    for key, n in sorted(modeller.corrections.counts.items()):
        factor = (modeller.corrections.ttft if key[0] == "prefill" else modeller.corrections.itl)[key]
        notes.append(f"bench: {n} measured points correct {key[0]} on {key[1]} TP{key[2]} (kv {key[3]}) by x{factor:.2f}")
    return Advice(objective, tuple(workloads), tuple(ranked), tuple(notes))
