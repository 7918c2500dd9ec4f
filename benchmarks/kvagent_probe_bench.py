#!/usr/bin/env python3
"""What the KV agent's NIXL probe measures on this machine, per UCX transport.

Runs the agent's real probe (``xpdctl.kvagent.transfer.run_transfer``: a long-lived worker process
reads a source agent's host-memory buffer over NIXL/UCX) REPEAT times for each UCX setting and prints
the median, min and max bandwidth and 4 KiB read latency, and the wall time of the first probe (which
starts the worker: Python, torch and nixl imports) against the median of the others (a transfer only). Both agents are on this machine, so "default"
is what UCX picks between two local processes (cross-memory attach) and "UCX_TLS=tcp" is the
loopback stand-in for a host pair without RDMA. On a shared, busy machine the spread is wide.

    .venv/bin/python benchmarks/kvagent_probe_bench.py --size-mib 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from xpdctl.kvagent.source import Source
from xpdctl.kvagent.transfer import ProbeWorkers, run_transfer
from xpdctl.output import table

SETTINGS = {"default": {}, "UCX_TLS=tcp": {"UCX_TLS": "tcp"}}


def _spread(values: list[float], fmt: str) -> list[str]:
    return [format(statistics.median(values), fmt), format(min(values), fmt), format(max(values), fmt)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    source = Source("bench-src", args.size_mib)
    rows = []
    async with ProbeWorkers() as workers:
        for label, env in SETTINGS.items():
            results, walls = [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                results.append(await run_transfer("bench-dst", "bench-src", source.info, workers=workers,
                                                  ucx_env=env, timeout_s=120))
                walls.append(time.perf_counter() - start)
            rows.append(_row(label, results, walls))
    print(f"NIXL READ of {args.size_mib} MiB (bandwidth) and 4 KiB (latency), {args.repeat} probes each")
    print(table(
        ["ucx", "transport", "gbit/s med", "min", "max", "latency ms med", "min", "max",
         "first probe s", "later probes s"], rows,
    ))


def _row(label: str, results, walls: list[float]) -> list[str]:
    failed = [r.reason for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{label}: probe failed: {failed[0]}")
    return [
        label,
        results[0].transport,
        *_spread([r.bandwidth_gbps for r in results], ".2f"),
        *_spread([r.latency_ms for r in results], ".3f"),
        f"{walls[0]:.2f}",
        f"{statistics.median(walls[1:]):.2f}" if len(walls) > 1 else "-",
    ]


if __name__ == "__main__":
    asyncio.run(main())
