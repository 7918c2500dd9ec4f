"""``xpdctl advise``: which hosts should prefill, which decode, at what TP, for a given workload."""

from __future__ import annotations

import math
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table

DEFAULT_RESULTS = Path("bench-results")  # `xpdctl bench --out` default


def _outcome_json(o) -> dict:
    p = o.prediction
    return {
        "workload": {"isl": o.workload.isl, "osl": o.workload.osl, "concurrency": o.workload.concurrency,
                     "request_rate": o.workload.request_rate},
        "ttft_ms": round(o.ttft_s * 1000, 2), "itl_ms": round(o.itl_s * 1000, 3), "e2el_s": round(o.e2el_s, 3),
        "tps": round(o.tps, 1), "corrected_by_bench": list(o.corrected),
        "e2el_s_band": [round(v, 3) for v in o.band("e2el")], "tps_band": [round(v, 1) for v in o.band("tps")],
        "model": {"prefill_ms": round(p.prefill_s * 1000, 2), "prefill_wait_ms": round(p.prefill_wait_s * 1000, 2),
                  "prefill_utilization": round(p.prefill_utilization, 3), "kv_transfer_ms": round(p.transfer_s * 1000, 2),
                  "kv_stages": [{"stage": st.name, "ms": round(st.seconds * 1000, 2), "mb": round(st.bytes / 1e6, 2),
                                 "fixed_ms": round(st.fixed_s * 1000, 2), "gb_s": round(st.rate_b_s / 1e9, 2), "rate": st.how}
                                for st in (p.transfer.stages if p.transfer else ())],
                  "kv_mb": round(p.kv_bytes / 1e6, 1), "decode_batch": round(p.decode_batch, 2),
                  "congestion": round(p.congestion, 3), "load_stall": round(p.load_stall, 3),
                  "prefill_bound": p.prefill_step.bound, "decode_bound": p.decode_step.bound,
                  "ttft_ms": round(p.ttft_s * 1000, 2), "itl_ms": round(p.itl_s * 1000, 3), "e2el_s": round(p.e2el_s, 3)},
    }  # fmt: skip


def _ranked_json(r) -> dict:
    o = r.option
    return {
        "rank": r.rank, "score": round(r.score, 4), "option": o.key(), "gpus": r.gpus,
        "prefill": {"hosts": list(o.prefill.hosts), "hardware": o.prefill.hardware, "tensor_parallel": o.prefill.tp,
                    "instances": o.prefill.instances},
        "decode": {"hosts": list(o.decode.hosts), "hardware": o.decode.hardware, "tensor_parallel": o.decode.tp,
                   "instances": o.decode.instances},
        "kv_path": o.path, "conditional_disagg_threshold": o.threshold,
        "predictions": [_outcome_json(x) for x in r.outcomes], "reasons": list(r.reasons),
    }  # fmt: skip


@click.command(context_settings={"show_default": True})
@click.option("-i", "--inventory", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Inventory whose GPU hosts are to be assigned.")
@click.option("-w", "--workload", "workloads", multiple=True, required=True,
              help="isl=N,osl=N,concurrency=N[,rate=R]; repeat for a mix (ranked by geomean).")
@click.option("--objective", type=click.Choice(["e2el", "tps", "ttft", "itl"]), default="e2el",
              help="What to optimise: median end-to-end latency, total tokens/s, TTFT or ITL.")
@click.option("--measured", "measured", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="Results of `xpdctl bench` (folder or results.json) that correct the model; repeatable "
                   "[default: ./bench-results, where bench writes, if it exists].")
@click.option("--model-only", is_flag=True, help="Ignore bench results: predictions from the hardware table alone.")
@click.option("--calibration", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="YAML overriding the model's fitted constants (see xpdctl/perfmodel/calibration.py).")
@click.option("--model-spec", help="Model shape to use [default: from the inventory's model.name].")
@click.option("--top", type=int, default=8, help="Options to show (all are ranked).")
@click.option("--write", "write_to", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the inventory with the chosen option's pools to this file (comments kept).")
@click.option("--pick", type=int, default=1, help="Rank of the option --write uses.")
@output_option
def command(inventory, workloads, objective, measured, model_only, calibration, model_spec, top, write_to, pick, output) -> None:
    """Model every way to split the inventory's GPU hosts into prefill and decode pools and rank them.

    For each option (which hardware prefills, which decodes, how many instances of what TP, and
    whether short prompts skip disaggregation) a roofline + queueing model predicts TTFT, ITL,
    E2EL and total tokens/s at each workload, from the hardware table and the model's shape alone;
    `--measured` folders from `xpdctl bench` correct it with what your cluster really did. Reasons
    say what limits each phase. The model is documented in xpdctl/perfmodel/__init__.py.

    \b
    Examples:
      xpdctl advise -i inventory/lab.yaml -w isl=8192,osl=1024,concurrency=32
      xpdctl advise -i lab.yaml -w isl=1K,osl=1K,c=8 -w isl=8K,osl=8K,c=16 --objective tps
      xpdctl advise -i lab.yaml -w isl=8K,osl=8K,c=16 --measured bench-results/ -o json
      xpdctl advise -i lab.yaml -w isl=8K,osl=8K,c=16 --write lab-tuned.yaml
      xpdctl advise -i lab.yaml -w isl=8K,osl=8K,c=16 --model-only      # the hardware table alone
    """  # fmt: skip
    from xpdctl.errors import InputError
    from xpdctl.inventory import load_inventory
    from xpdctl.perfmodel.advise import MODEL_ERROR, advise
    from xpdctl.perfmodel.calibration import load_calibration
    from xpdctl.perfmodel.measured import load_measurements
    from xpdctl.perfmodel.specs import model_spec as find_model
    from xpdctl.perfmodel.workloads import parse_workload

    inv = load_inventory(inventory).inventory
    cal = load_calibration(calibration)
    model = find_model(model_spec or inv.model.name)
    sources = list(measured)
    if not sources and not model_only and DEFAULT_RESULTS.is_dir():
        sources = [DEFAULT_RESULTS]
    points, skipped = ([], []) if model_only else load_measurements(sources)
    result = advise(inv, model, [parse_workload(w) for w in workloads], cal, points, objective)
    notes = list(result.notes) + skipped
    if not result.ranked:
        raise InputError(f"{inventory}: no admissible option (no TP size fits the model on these hosts); add GPUs or hosts")
    if write_to:
        if not 1 <= pick <= len(result.ranked):
            raise InputError(f"--pick {pick}: there are {len(result.ranked)} options; pick 1..{len(result.ranked)}")
        from xpdctl.perfmodel.writeback import write_option

        write_option(inventory, result.ranked[pick - 1].option, write_to)

    if output == "json":
        emit_json({"inventory": str(inventory), "model": model.name, "objective": objective,
                   "ranked": [_ranked_json(r) for r in result.ranked[:top]], "options_total": len(result.ranked),
                   "notes": notes, "written": str(write_to) if write_to else None})
        return
    for i, work in enumerate(result.workloads):
        click.echo(f"workload {work.label()}" + (f", rate {work.request_rate:g}/s" if work.request_rate else ""))
        rows = []
        for r in result.ranked[:top]:
            o, out = r.option, r.outcomes[i]
            (elo, ehi), (tlo, thi) = out.band("e2el"), out.band("tps")
            kv = out.prediction.transfer
            rows.append([r.rank, o.prefill.describe(), o.decode.describe(), o.path, o.threshold or "-",
                         f"{out.ttft_s * 1000:.0f}", f"{out.itl_s * 1000:.1f}", f"{out.e2el_s:.2f} ({elo:.2f}-{ehi:.2f})",
                         f"{out.tps:.0f} ({tlo:.0f}-{thi:.0f})",
                         "-" if kv is None else "+".join(f"{st.seconds * 1000:.0f}" for st in kv.stages),
                         "yes" if out.corrected else "model"])
        click.echo(table(["rank", "prefill", "decode", "kv", "cond<", "ttft ms", "itl ms", "e2el s (band)", "tps (band)",
                          "kv ms (stages)", "bench"], rows))
        transfers: dict[str, list[str]] = {}
        for r in result.ranked[:top]:
            kv = r.outcomes[i].prediction.transfer
            if kv is not None:
                transfers.setdefault(kv.describe(), []).append(f"#{r.rank}")
        for text, ranks in transfers.items():
            click.echo(f"kv transfer {','.join(ranks)}: {text}")
        click.echo("")
    best = result.ranked[pick - 1 if write_to else 0]
    click.echo(f"why #{best.rank}:")
    for line in best.reasons:
        click.echo(f"  {line}")
    err = MODEL_ERROR
    click.echo(f"bands: the model's held-out error against the technical report (E2EL +-{math.exp(err['e2el']) - 1:.0%}, "
               f"TPS +-{math.exp(err['tps']) - 1:.0%}; docs/performance.md); kv ms (stages): "
               + ("save + NIC + load (host-staged, run one after another)" if any(r.option.path == "host" for r in result.ranked[:top])
                  else "NIC") + ", each with its bytes and rate in the kv transfer lines")
    for note in notes:
        click.echo(f"note: {note}")
    if write_to:
        click.echo(f"wrote {write_to} (pools of option #{best.rank})")
