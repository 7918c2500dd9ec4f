"""``xpdctl bench``: the report's benchmark grid against a cluster's router, with vLLM's metric definitions."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import replace
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


def _simulated_url(stack: contextlib.ExitStack, inventory: Path, time_scale: float) -> str:
    from xpdctl.bench.simcluster import SimulatedCluster
    from xpdctl.inventory import load_inventory

    return stack.enter_context(SimulatedCluster(load_inventory(inventory).inventory, time_scale)).url


def _rate(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise click.BadParameter("must be > 0 (or inf)")
    return value


@click.command(context_settings={"show_default": True})
@click.option("-i", "--inventory", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Cluster to measure: its router's address and port, its model name and pools.")
@click.option("--url", help="Base URL of the endpoint instead of the inventory's router (e.g. http://127.0.0.1:8000).")
@click.option("--model", help="Model name to send [default: the inventory's model.name].")
@click.option("--label", help="Name of this cluster in tables and plots [default: the inventory's cluster name].")
@click.option("--isl", default="1024,8192", help="Input lengths in tokens (1K = 1024).")
@click.option("--osl", default="1024,8192", help="Output lengths in tokens.")
@click.option("--concurrency", default="1,4,8,16,32", help="Max concurrency of each point (the report goes to 256 at 8K/1K).")
@click.option("--report-grid", is_flag=True,
              help="The report's exact grid (1K/8K x 1K/8K at 1-32, 8K/1K on to 256) instead of --isl/--osl/--concurrency.")
@click.option("--prompts-per-concurrency", type=int, default=4, help="Prompts per point = this x concurrency.")
@click.option("--request-rate", type=_rate, default="8", help="Requests/s offered (the report's REQ_RATE); inf = all at once.")
@click.option("--warmups", type=int, default=2, help="Warm-up requests before each point (not measured).")
@click.option("--seed", type=int, default=0)
@click.option("--compare", "compare_with", type=click.Path(path_type=Path, exists=True),
              help="Second cluster: an inventory (measured now, same grid) or a results folder of an earlier run. "
                   "Adds ratio tables (this / that) and geomeans.")
@click.option("--tokenizer", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Local tokenizer folder for exact prompt lengths [default: the inventory's model.path, if it has one].")
@click.option("--backend", type=click.Choice(["auto", "builtin", "vllm"]), default="auto",
              help="vllm = run `vllm bench serve` itself (needs a tokenizer); builtin = xpdctl's client with the same "
                   "definitions; auto = vllm when it runs here and a tokenizer is known.")
@click.option("--simulate", is_flag=True,
              help="Measure the inventories' pools run here as simulator engines timed by their GPUs' performance "
                   "profiles (xpdctl sim --profile) behind xpdctl's router on loopback, instead of the real cluster.")
@click.option("--time-scale", type=float, default=1.0, help="With --simulate: multiply every simulated duration.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default="bench-results",
              help="Results go to a new timestamped folder under this one.")
@output_option
def command(inventory, url, model, label, isl, osl, concurrency, report_grid, prompts_per_concurrency, request_rate, warmups, seed,
            compare_with, tokenizer, backend, simulate, time_scale, out_dir, output) -> None:
    """Measure a cluster over a grid of input/output lengths and concurrencies, as the report did.

    Each point sends prompts-per-concurrency x C random prompts of exactly ISL tokens (vLLM's random
    dataset), asks for exactly OSL tokens (ignore_eos), at the request rate with at most C in flight,
    after warm-up requests. Metrics are `vllm bench serve`'s: TTFT, TPOT = (E2EL - TTFT)/(out - 1),
    ITL, E2EL, and total token throughput (TPS). The folder gets results.json, report.md (median
    E2EL and TPS per point; with --compare, ratios and geomeans in the report's format) and
    e2el.png / tps.png against concurrency.

    \b
    Examples:
      xpdctl bench -i inventory/lab.yaml --report-grid                     # exactly the report's runs
      xpdctl bench -i inventory/lab.yaml --compare inventory/lab-single-vendor.yaml   # 1K/8K x 1K/8K at 1-32
      xpdctl bench -i lab.yaml --isl 8K --osl 1K --concurrency 1,4,8,16,32,64,128,256
      xpdctl bench -i lab.yaml --compare bench-results/20260301-101500-lab-single/
      xpdctl bench --url http://127.0.0.1:8000 --model tiny-gpt-oss --isl 128 --osl 32 --concurrency 1,4
      xpdctl bench -i inventory/lab.yaml --compare inventory/lab-single-vendor.yaml --simulate   # no GPUs needed
    """  # fmt: skip
    from xpdctl.bench import results as res
    from xpdctl.bench.session import BenchSession
    from xpdctl.bench.target import from_inventory, from_url
    from xpdctl.errors import InputError
    from xpdctl.perfmodel.workloads import parse_counts

    if not inventory and not url:
        raise InputError("give -i INVENTORY (its router is measured) or --url URL --model NAME")
    if simulate and (not inventory or url):
        raise InputError("--simulate runs an inventory's pools: give -i INVENTORY and no --url")
    grid = res.REPORT_GRID if report_grid else res.product_grid(parse_counts(isl), parse_counts(osl), parse_counts(concurrency))
    earlier, others = None, []
    if compare_with is not None:
        if compare_with.is_dir() or compare_with.suffix == ".json":
            earlier = res.load(compare_with).runs[0]
        else:
            others.append(compare_with)
    with contextlib.ExitStack() as stack:

        def endpoint(path: Path, given: str | None) -> str | None:
            return _simulated_url(stack, path, time_scale) if simulate else given

        first = from_inventory(inventory, endpoint(inventory, url), model, label) if inventory else from_url(url, model, label)
        targets = [first] + [from_inventory(path, endpoint(path, None)) for path in others]
        if simulate:
            targets = [replace(t, engine="simulator", time_scale=time_scale) for t in targets]
        settings = res.Settings(grid=grid, prompts_per_concurrency=prompts_per_concurrency,
                                request_rate=None if math.isinf(request_rate) else request_rate, warmups=warmups,
                                seed=seed, tokenizer=str(tokenizer) if tokenizer else targets[0].tokenizer)
        folder = res.result_folder(out_dir, targets[0].label)
        try:
            session = BenchSession(settings, backend, folder)
            with click.progressbar(length=session.total_requests(len(targets)), label="bench", show_pos=True,
                                   file=sys.stderr, item_show_func=lambda item: item) as bar:
                runs = [session.run(t, on_progress=lambda n, what: bar.update(n, what)) for t in targets]
            results = session.finish(runs + ([earlier] if earlier else []))
        except BaseException:
            if not any(folder.iterdir()):
                folder.rmdir()  # nothing measured: leave no empty timestamped folder behind
            raise
    if output == "json":
        emit_json(results.model_dump(mode="json") | {"folder": str(folder)})
        return
    click.echo((folder / "report.md").read_text())
    click.echo(f"results: {folder}/ (results.json, report.md, e2el.png, tps.png)")
