"""Markdown tables in the report's format, and the comparison data they are printed from.

Per ISL/OSL scenario, one row per concurrency: median E2EL in seconds and total token throughput
(TPS); with two runs, each side's values and the ratios first/second (the report: cross/single;
E2EL ratio < 1 and TPS ratio > 1 favour the first), closed by a geomean row; a last table gives the
geomean of every scenario. The JSON's ``comparison`` holds exactly the numbers the tables print.
"""

from __future__ import annotations

import math

from xpdctl.bench.results import Results, Run


def _k(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def scenario_name(isl: int, osl: int) -> str:
    return f"ISL {isl} / OSL {osl}"


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 2) if values else None


def compare(results: Results, a: Run, b: Run) -> dict:
    """Rounded as printed: E2EL to 0.01 s, TPS to whole tokens/s, ratios to 0.01."""
    out = {"first": a.label, "second": b.label, "scenarios": []}
    all_e2el, all_tps = [], []
    for isl, osl in results.settings.scenarios():
        rows = []
        for c in results.settings.concurrencies(isl, osl):
            pa, pb = a.point(isl, osl, c), b.point(isl, osl, c)
            if pa is None or pb is None or not pa.metrics.get("completed") or not pb.metrics.get("completed"):
                continue
            ea, eb, ta, tb = round(pa.e2el_s, 2), round(pb.e2el_s, 2), round(pa.tps), round(pb.tps)
            rows.append({"concurrency": c, "first_e2el_s": ea, "second_e2el_s": eb,
                         "e2el_ratio": round(pa.e2el_s / pb.e2el_s, 2) if pb.e2el_s else None,
                         "first_tps": ta, "second_tps": tb, "tps_ratio": round(pa.tps / pb.tps, 2) if pb.tps else None})
        geo = {"e2el_ratio": _geomean([r["e2el_ratio"] for r in rows]), "tps_ratio": _geomean([r["tps_ratio"] for r in rows])}
        all_e2el += [r["e2el_ratio"] for r in rows]
        all_tps += [r["tps_ratio"] for r in rows]
        out["scenarios"].append({"isl": isl, "osl": osl, "rows": rows, "geomean": geo})
    out["geomean"] = {"e2el_ratio": _geomean(all_e2el), "tps_ratio": _geomean(all_tps)}
    return out


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _md(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def run_tables(results: Results, run: Run) -> list[str]:
    lines = [f"## {run.label}", "", f"Endpoint {run.url}, model `{run.model}`: {run.engine_label()}."]
    for isl, osl in results.settings.scenarios():
        rows = []
        for c in results.settings.concurrencies(isl, osl):
            p = run.point(isl, osl, c)
            if p is None:
                continue
            m = p.metrics
            rows.append([str(c), f"{p.e2el_s:.2f}", f"{p.tps:,.0f}", f"{m['median_ttft_ms']:.1f}", f"{m['median_tpot_ms']:.2f}",
                         f"{int(m['completed'])}/{p.num_prompts}"])
        lines += ["", f"### {scenario_name(isl, osl)}", ""]
        lines += _md(["CON", "E2EL (s)", "TPS", "TTFT (ms)", "TPOT (ms)", "OK"], rows)
    return lines


def comparison_tables(comparison: dict) -> list[str]:
    a, b = comparison["first"], comparison["second"]
    lines = [f"## {a} vs {b}", "", f"Ratios are {a} / {b}: E2EL ratio below 1.0 and TPS ratio above 1.0 favour {a}."]
    summary = []
    for sc in comparison["scenarios"]:
        rows = [[str(r["concurrency"]), f"{r['first_e2el_s']:.2f}", f"{r['second_e2el_s']:.2f}", _ratio(r["e2el_ratio"]),
                 f"{r['first_tps']:,}", f"{r['second_tps']:,}", _ratio(r["tps_ratio"])] for r in sc["rows"]]
        rows.append(["Geomean", "", "", _ratio(sc["geomean"]["e2el_ratio"]), "", "", _ratio(sc["geomean"]["tps_ratio"])])
        lines += ["", f"### {scenario_name(sc['isl'], sc['osl'])}", ""]
        lines += _md(["CON", f"{a} E2EL (s)", f"{b} E2EL (s)", "E2EL Ratio", f"{a} TPS", f"{b} TPS", "TPS Ratio"], rows)
        summary.append([f"{_k(sc['isl'])}/{_k(sc['osl'])}", _ratio(sc["geomean"]["e2el_ratio"]), _ratio(sc["geomean"]["tps_ratio"])])
    summary.append(["All", _ratio(comparison["geomean"]["e2el_ratio"]), _ratio(comparison["geomean"]["tps_ratio"])])
    lines += ["", "### Geomean per scenario", ""] + _md(["ISL/OSL", "E2EL Ratio", "TPS Ratio"], summary)
    return lines


def markdown(results: Results) -> str:
    s = results.settings
    rate = "unlimited" if s.request_rate is None else f"{s.request_rate:g}/s"
    cells = "; ".join(f"{_k(i)}/{_k(o)} at {', '.join(map(str, s.concurrencies(i, o)))}" for i, o in s.scenarios())
    lines = ["# Benchmark", "",
             f"{results.created}. ISL/OSL and concurrency: {cells}. "
             f"{s.prompts_per_concurrency}x concurrency prompts per point, request rate {rate}, {s.warmups} warm-up requests. "
             "E2EL is the median end-to-end latency; TPS the total (input + output) tokens per second.", ""]
    for run in results.runs:
        lines += run_tables(results, run) + [""]
    if results.comparison:
        lines += comparison_tables(results.comparison) + [""]
    return "\n".join(lines)
