#!/usr/bin/env python3
"""What the KV agent's NIXL probe measures on this machine, per UCX transport.

Runs the agent's real probe (``xpdctl.kvagent.transfer.run_transfer``: a worker process reads a
source agent's host-memory buffer over NIXL/UCX) REPEAT times for each UCX setting and prints the
median, min and max bandwidth and 4 KiB read latency. Both agents are on this machine, so "default"
is what UCX picks between two local processes (cross-memory attach) and "UCX_TLS=tcp" is the
loopback stand-in for a host pair without RDMA. On a shared, busy machine the spread is wide.

    .venv/bin/python benchmarks/kvagent_probe_bench.py --size-mib 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from xpdctl.kvagent.source import Source
from xpdctl.kvagent.transfer import run_transfer
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
    for label, env in SETTINGS.items():
        results = [
            await run_transfer("bench-dst", "bench-src", source.info, ucx_env=env, timeout_s=120)
            for _ in range(args.repeat)
        ]
        failed = [r.reason for r in results if not r.ok]
        if failed:
            raise SystemExit(f"{label}: probe failed: {failed[0]}")
        rows.append([
            label,
            results[0].transport,
            *_spread([r.bandwidth_gbps for r in results], ".2f"),
            *_spread([r.latency_ms for r in results], ".3f"),
        ])
    print(f"NIXL READ of {args.size_mib} MiB (bandwidth) and 4 KiB (latency), {args.repeat} probes each")
    print(table(
        ["ucx", "transport", "gbit/s med", "min", "max", "latency ms med", "min", "max"], rows,
    ))


if __name__ == "__main__":
    asyncio.run(main())
