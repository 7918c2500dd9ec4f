"""Whether two NIXL releases move bytes between each other: the KV agent's real probe across environments.

Each cell runs the source (the side whose memory is read: a prefill) with one environment's NIXL and the
reading worker (a decode) with another's: this script starts itself with the source's interpreter, whose
:class:`~xpdctl.kvagent.transfer.ProbeWorkers` starts its worker with the reader's. Both sides exchange
NIXL agent metadata and do one NIXL READ over UCX (``xpdctl.kvagent.transfer.run_transfer``), checked
by digest. That is NIXL's own interop (metadata format, UCX wire); it is not vLLM's connector, whose
handshake also compares vLLM's factors (docs/kv-handshake.md). Environments are named ``NAME=PYTHON``;
each one's NIXL version is read with the engine identity probe. Prints the matrix; exits 1 when a cell
differs from the NIXL API cells of ``xpdctl/releases/nixl_interop.yaml`` (``--record`` prints the YAML cells instead).

    .venv/bin/python benchmarks/nixl_interop.py --env a=.venv/bin/python --env b=/tmp/env150/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys

import yaml

from xpdctl.identity import read_identity
from xpdctl.output import table
from xpdctl.releases import nixl_interop

TIMEOUT_S = 300
RUN = "nixl-api"  # the run of xpdctl/releases/nixl_interop.yaml these cells belong to


async def _cell(reader_python: str, size_mib: int) -> dict:
    from xpdctl.kvagent.source import Source
    from xpdctl.kvagent.transfer import ProbeWorkers, run_transfer

    source = Source("interop-src", size_mib)
    async with ProbeWorkers(python=reader_python) as workers:
        result = await run_transfer("interop-dst", "interop-src", source.info, workers=workers, ucx_env={},
                                    timeout_s=120)
    return {"ok": result.ok, "reason": result.reason, "transport": result.transport,
            "bandwidth_gbps": result.bandwidth_gbps}


def _measure(source_python: str, reader_python: str, size_mib: int) -> dict:
    done = subprocess.run([source_python, __file__, "--cell", reader_python, "--size-mib", str(size_mib)],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "reason": f"the cell did not run (exit {done.returncode}): {tail}", "transport": None,
                "bandwidth_gbps": None}
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", default=[], help="NAME=PYTHON, at least two")
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell as the source side
    parser.add_argument("--record", action="store_true", help="print the measured cells as YAML")
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(asyncio.run(_cell(args.cell, args.size_mib))))
        return 0
    envs = dict(e.split("=", 1) for e in args.env)
    versions = {}
    for name, python in envs.items():
        nixl = read_identity([python]).nixl.get("nixl")
        versions[name] = f"nixl {nixl.version}" if nixl else "no nixl"
    known = nixl_interop().results(RUN)
    rows, cells, missed = [], [], []
    for src, dst in itertools.product(envs, repeat=2):
        found = _measure(envs[src], envs[dst], args.size_mib)
        result = "ok" if found["ok"] else "broken"
        cells.append({"run": RUN, "source": versions[src], "reader": versions[dst], "result": result})
        expected = known.get((versions[src], versions[dst]))
        if expected is not None and expected != result:
            missed.append(f"{versions[src]} -> {versions[dst]}: recorded {expected}, measured {result}")
        rows.append((f"{src} ({versions[src]})", f"{dst} ({versions[dst]})", result, found["transport"] or "-",
                     f"{found['bandwidth_gbps']:.2f}" if found["bandwidth_gbps"] else "-",
                     "" if found["ok"] else found["reason"][:80], expected or "not recorded"))
    print(f"NIXL READ of {args.size_mib} MiB, source (prefill side) x reader (decode side)")
    print(table(["source", "reader", "result", "transport", "gbit/s", "why", "recorded"], rows))
    if args.record:
        print(yaml.safe_dump({"measured": cells}, sort_keys=False))
    for line in missed:
        print(f"DIFFERS: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
