"""Rolling and blue-green upgrades of a local simulator cluster under streaming load: how long each
takes, what clients see (requests, failures, latency) and how much capacity stays (sampled from the
router's admin API). One prefill and three decode simulator instances on 127.0.0.1, the cluster
and load generator of tests/upgrade (upgrade_helpers.py). Bounded: four upgrades, a few minutes.

    .venv/bin/python benchmarks/upgrade_bench.py [--workers 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "upgrade"))

from upgrade_helpers import TOKEN, Load, start_sim_cluster, write_release  # noqa: E402

from xpdctl.output import table  # noqa: E402
import children  # noqa: E402 - benchmarks/children.py, next to this script


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) >= 2 else float("nan")


def main() -> None:
    children.install()  # SIGTERM/SIGHUP still run the finally that destroys the hosts
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="client threads streaming through the router")
    args = parser.parse_args()
    rows, steps = [], {}
    with tempfile.TemporaryDirectory(prefix="upgrade-bench-") as tmp:
        cluster = start_sim_cluster(Path(tmp))
        model = cluster.data["model"]["name"]
        try:
            runs = [
                ("steady (no upgrade)", None, {}),
                ("rolling, max-unavailable 1", [], {"python": "release-2"}),
                ("rolling, max-unavailable 3 (surge)", ["--max-unavailable", "3"], {"python": "release-3"}),
                ("blue-green (new vLLM version)", ["--blue-green"], {"python": "release-4", "vllm_version": "0.33.0"}),
            ]
            for name, flags, engine in runs:
                if "python" in engine:
                    engine = {**engine, "python": str(write_release(Path(tmp) / engine["python"]))}
                    cluster.write(**engine)
                with Load(cluster.router_url, TOKEN, model, workers=args.workers, max_seconds=600) as traffic:
                    start = time.monotonic()
                    if flags is None:
                        time.sleep(10)
                    else:
                        result = json.loads(cluster.upgrade(*flags, "-o", "json").stdout)
                        for phase in result["phases"]:
                            for step, seconds in phase["seconds"].items():
                                steps.setdefault((name, step), []).append(seconds)
                    took = time.monotonic() - start
                lat = traffic.latencies
                rows.append([name, f"{took:.1f}", traffic.ok, len(traffic.failures), min(traffic.serving),
                             f"{statistics.median(lat) * 1000:.0f}", f"{_pct(lat, 99):.0f}"])
        finally:
            cluster.xpdctl("down", check=False)
    print(table(["run", "seconds", "requests ok", "failed", "min decodes serving", "p50 ms", "p99 ms"], rows))
    print()
    print(table(["run", "step", "count", "mean s", "max s"],
                [[run, step, len(v), f"{statistics.mean(v):.2f}", f"{max(v):.2f}"] for (run, step), v in steps.items()]))


if __name__ == "__main__":
    main()
