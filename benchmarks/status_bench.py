#!/usr/bin/env python3
"""How long ``status`` takes to observe N hosts. Target: under 3 s for 32 hosts.

Runs against SIMULATED hosts: an inventory of N hosts on loopback addresses 127.0.1.x (half NVIDIA
prefill, half AMD decode, 2 GPUs each), rendered by xpdctl's own plan/render; every engine is a
simulator (xpdctl.sim) listening on its host's address, several per process; the SSH hop is replaced
by the local-shell transport (the same status script, run by this machine's sh), with each host's
rendered files installed under its own root folder (so drift hashing is real work) and stand-in
``nvidia-smi``/``amd-smi`` that print the captured H200 XML and the hand-written MI300X JSON (so the
parsers do real work). KV agents and the router are not started: their probes fail fast with
"cannot connect", which the output counts. Real SSH test hosts are not used yet.

    .venv/bin/python benchmarks/status_bench.py --hosts 32 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NVIDIA_XML = REPO.parent / "shared" / "fixtures" / "nvidia-h200-x2" / "nvidia-smi-q.xml"
AMD_FIXTURES = REPO / "tests" / "fixtures" / "amd"
TARGET_S = 3.0


def inventory_yaml(hosts: int) -> str:
    prefill = [f"p{i}" for i in range(hosts // 2)]
    decode = [f"d{i}" for i in range(hosts - len(prefill))]
    lines = [
        "cluster: bench",
        "model: {name: tiny}",
        f'engine: {{vllm_version: "0.32.0", runtime: native, server: sim, python: {sys.executable}}}',
        "hosts:",
    ]
    for index, name in enumerate(prefill + decode):
        vendor, model = ("nvidia", "H100-SXM") if name.startswith("p") else ("amd", "MI300X")
        lines.append(f"  - {{name: {name}, address: 127.0.1.{index + 1}, vendor: {vendor}, gpu: {{model: {model}, count: 2}}}}")
    lines += [
        "pools:",
        # Ports away from the defaults: a local cluster on this machine listens on 0.0.0.0:8100.
        f"  prefill: {{hosts: [{', '.join(prefill)}], tensor_parallel: 2, port: 18100}}",
        f"  decode: {{hosts: [{', '.join(decode)}], tensor_parallel: 2, port: 18200}}",
        f"router: {{host: {prefill[0]}, port: 18000}}",
        "kv: {agent_port: 18788}",
    ]
    return "\n".join(lines) + "\n"


def _stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def install_host(root: Path, files: dict[str, str], vendor: str) -> None:
    for host_path, content in files.items():
        target = root / host_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    if vendor == "nvidia":
        _stand_in(root / "usr/bin/nvidia-smi", f'exec cat "{NVIDIA_XML}"\n')
    else:
        _stand_in(
            root / "usr/bin/amd-smi",
            f'case "$1" in static) exec cat "{AMD_FIXTURES}/amd-smi-static.json";; '
            f'metric) exec cat "{AMD_FIXTURES}/amd-smi-metric.json";; esac\n',
        )


async def _serve_sims(specs: list[dict]) -> None:
    from xpdctl.sim.config import SimConfig
    from xpdctl.sim.server import start

    for spec in specs:
        await start(SimConfig(model="tiny", **spec))
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_sims(engines: list[dict], processes: int, workers: list[subprocess.Popen]) -> None:
    """Start the simulator processes into ``workers`` (the caller stops them, also after a failure)."""
    for chunk in (engines[i::processes] for i in range(processes)):
        if not chunk:
            continue
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-sims", json.dumps(chunk)], stdout=subprocess.PIPE, text=True
        )
        workers.append(proc)
    for proc in workers:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"a simulator process did not start (exit {proc.poll()}); is a port in use?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sim-processes", type=int, default=4, help="processes the simulator engines share")
    parser.add_argument("--serve-sims", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sims:
        asyncio.run(_serve_sims(json.loads(args.serve_sims)))
        return 0
    if args.hosts < 2:
        parser.error("--hosts must be at least 2 (one prefill, one decode)")

    from xpdctl.inventory import load_inventory
    from xpdctl.observe.cluster import observe_targets
    from xpdctl.observe.targets import targets_from
    from xpdctl.observe.transport import LocalShellTransport
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files

    work = Path(tempfile.mkdtemp(prefix="xpd-status-bench-"))
    workers: list[subprocess.Popen] = []
    try:
        inventory_path = work / "inventory.yaml"
        inventory_path.write_text(inventory_yaml(args.hosts))
        loaded = load_inventory(inventory_path)
        files = render_files(build_plan(loaded, {}))
        cluster, targets = targets_from(loaded.inventory, files)
        vendors = {host.name: host.vendor for host in loaded.inventory.hosts}
        engines = []
        for target in targets:
            root = work / "hosts" / target.name
            prefix = f"hosts/{target.name}"
            install_host(root, {rel[len(prefix):]: f.content for rel, f in files.items() if rel.startswith(prefix + "/")}, vendors[target.name])
            target.root = str(root)
            engines += [
                {"role": s.role, "host": target.address, "port": s.port}
                for s in target.services
                if s.role in ("prefill", "decode")
            ]
        started = time.monotonic()
        start_sims(engines, args.sim_processes, workers)
        print(f"started {len(engines)} simulator engines in {len(workers)} processes in {time.monotonic() - started:.1f} s")

        transport = LocalShellTransport()
        asyncio.run(observe_targets(cluster, targets, transport))  # warm-up: imports, first connections
        durations, last = [], None
        for _ in range(args.repeat):
            began = time.monotonic()
            last = asyncio.run(observe_targets(cluster, targets, transport))
            durations.append(time.monotonic() - began)

        engines_seen = [e for h in last.hosts for e in h.engines]
        gpus = sum(len(h.accelerators.gpus) for h in last.hosts)
        refused = sum(1 for h in last.hosts for a in h.kv_agents if not a.reachable)
        print()
        print("hosts: SIMULATED (sim engines on 127.0.1.x, local-shell transport instead of SSH, stand-in smi tools)")
        print(f"observed per run: {len(last.hosts)} hosts, {gpus} GPUs parsed, "
              f"{sum(e.healthy for e in engines_seen)}/{len(engines_seen)} engines healthy, "
              f"{sum(len(h.drift) for h in last.hosts)} drifted files, {refused} KV agents not running (expected)")
        print()
        print(f"{'hosts':>5}  {'runs':>4}  {'min s':>6}  {'median s':>8}  {'max s':>6}  {'target s':>8}  result")
        median = statistics.median(durations)
        print(f"{args.hosts:>5}  {args.repeat:>4}  {min(durations):>6.2f}  {median:>8.2f}  {max(durations):>6.2f}  "
              f"{TARGET_S:>8.1f}  {'PASS' if median < TARGET_S else 'FAIL'}")
        return 0 if median < TARGET_S else 1
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
