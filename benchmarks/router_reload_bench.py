#!/usr/bin/env python3
"""Config reloads under streaming load: does a SIGHUP drop anything, and how long does a reload take?

    .venv/bin/python benchmarks/router_reload_bench.py                     # 10 reloads, 32 streams
    .venv/bin/python benchmarks/router_reload_bench.py --reloads 30 --concurrency 128

`xpdctl router --config F` runs as its own process in front of one prefill and two decode simulators
(in this process). A closed loop of C streams runs all along; every reload swaps the decode the file
lists (the other one leaves while streams are on it) and changes the queue limit. Counted: requests
that did not answer 200 or whose stream did not end with ``data: [DONE]``, and the time from SIGHUP to
``xpd_router_config_reloads_total{result="ok"}`` counting it (polled every 10 ms, so +-10 ms).
Target (exit 1 when missed): no request failed or incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim
import children  # noqa: E402 - benchmarks/children.py, next to this script

BODY = {"model": "m", "prompt": "reload under load", "max_tokens": 40, "stream": True}


async def _reloads_ok(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith('xpd_router_config_reloads_total{result="ok"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def main(args: argparse.Namespace) -> int:
    sims = [await start_sim(SimConfig(role=r, model="m", port=0, ttft_ms=5, itl_ms=10)) for r in ("prefill", "decode", "decode")]
    prefill, decodes = sims[0], sims[1:]
    path = Path(tempfile.mkdtemp()) / "router.yaml"

    def write(i: int) -> None:
        path.write_text(yaml.safe_dump({
            "model": "m", "listen": {"host": "127.0.0.1"}, "health": {"interval_s": 0.5},
            "queue": {"max_in_flight": 512 + i % 2, "max_waiting": 256},
            "backends": [{"url": prefill.url, "pool": "prefill"}, {"url": decodes[i % 2].url, "pool": "decode"}]}))

    write(0)
    router = await asyncio.create_subprocess_exec(sys.executable, "-m", "xpdctl", "router", "--config", str(path), "--port", "0",
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    url = (await asyncio.wait_for(router.stdout.readline(), 60)).decode().rsplit(" ", 1)[1].strip()
    outcomes = {"ok": 0, "failed": 0}
    reasons: collections.Counter[str] = collections.Counter()
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for _ in range(600):
            async with http.get(url + "/health") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)

        async def client() -> None:
            while not done.is_set():
                try:
                    async with http.post(url + "/v1/completions", json=BODY) as resp:
                        body = await resp.read()
                        why = "" if resp.status == 200 and body.endswith(b"data: [DONE]\n\n") else f"{resp.status} {body[-160:]!r}"
                except aiohttp.ClientError as exc:
                    why = repr(exc)
                outcomes["failed" if why else "ok"] += 1
                if why:
                    reasons[why] += 1

        clients = [asyncio.create_task(client()) for _ in range(args.concurrency)]
        took = []
        try:
            for i in range(1, args.reloads + 1):
                await asyncio.sleep(args.gap_s)
                write(i)
                sent = time.monotonic()
                router.send_signal(signal.SIGHUP)
                for _ in range(3000):  # 30 s at most
                    if await _reloads_ok(http, url) >= i:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise SystemExit(f"reload {i} was not counted within 30 s")
                took.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(args.gap_s)
        finally:
            done.set()
            await asyncio.gather(*clients)
            router.terminate()
            await router.wait()
    for sim in sims:
        await sim.stop()
    print(f"| reloads | streams | requests | failed or incomplete | reload ms p50 | reload ms max |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.reloads} | {args.concurrency} | {outcomes['ok'] + outcomes['failed']} | {outcomes['failed']} | "
          f"{statistics.median(took):.0f} | {max(took):.0f} |")
    for why, n in reasons.most_common(5):
        print(f"{n} x {why}")
    print(f"{'PASS' if not outcomes['failed'] else 'FAIL'}  target: no request failed or cut short by a reload")
    return 1 if outcomes["failed"] else 0


if __name__ == "__main__":
    children.install()  # SIGTERM/SIGHUP unwind through the finally that stops the router
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gap-s", type=float, default=0.5, help="load between reloads")
    sys.exit(asyncio.run(main(parser.parse_args())))
