#!/usr/bin/env python3
"""Prefix-aware routing against least-in-flight, side by side, on simulated engines at scale.

    .venv/bin/python benchmarks/prefix_bench.py                  # 8 prefills, 4 decodes, both workloads
    .venv/bin/python benchmarks/prefix_bench.py --prefills 16 --conversations 128 --json out.json

SIMULATED, not measured on hardware: the engines are ``xpdctl sim`` instances (in this process) with
prefix caching (an LRU of vLLM block hashes, ``--num-gpu-blocks`` each) and vLLM's KV events, and
serial prefill: a prefill engine computes one prompt at a time for ``--prefill-ms-per-token`` per
token it has not cached, so the tokens a cache saves shorten the queue of every request behind.
Decode is a latency model (``--itl-ms`` per token). Every engine caches in both modes; only the
router's choice differs: ``prefix`` (the router's index of each engine's KV events, scoring in
docs/router.md) or ``least-inflight`` (the same router without ``prefix_routing``). Fresh engines per
run, so no run inherits another's cache. Prompts are tokenized with the tiny GPT-OSS model's tokenizer
(built into ~/.cache/xpdctl/models on first use), by the router and the engines alike.

Workloads (completions, streamed, ``--max-tokens`` each, ``--concurrency`` in flight):
- ``multi-turn``: conversations whose every turn sends the whole history so far plus a new message;
- ``system-prompt``: a few long shared system prompts, each request one of them plus a short question.

Columns: TTFT p50/p99 (ms, client-observed), prefill tokens the engines computed (prompt tokens
minus prefix-cache hits, from their vllm:prefix_cache_* counters), throughput (requests/s and output
tokens/s over the run). Targets (exit 1 when missed): on each workload, prefix routing computes fewer
prefill tokens than least-in-flight and its TTFT p50 is not higher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from xpdctl.bench.client import stream_completion
from xpdctl.models import ensure_model
from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router
from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim

MODEL = "prefix-bench"
TOKENIZER = Path("~/.cache/xpdctl/models/tiny-gpt-oss").expanduser()
_WORDS = ("the prefill engine reads every token of the prompt while the decode engine writes the answer and the kv "
          "cache moves between them through host memory over nixl and ucx users ask about routers caches blocks "
          "vendors kernels latency throughput").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def multi_turn(args: argparse.Namespace) -> list[list[str]]:
    rng = random.Random(1)
    chats = []
    for c in range(args.conversations):
        history = f"conversation {c}: " + _text(rng, args.turn_words)
        turns = []
        for _ in range(args.turns):
            turns.append(history)
            history += " answer: " + _text(rng, args.max_tokens) + " user: " + _text(rng, args.turn_words)
        chats.append(turns)
    return chats


def system_prompt(args: argparse.Namespace) -> list[list[str]]:
    rng = random.Random(2)
    systems = [f"system prompt {s}: " + _text(rng, args.system_words) for s in range(args.system_prompts)]
    return [[rng.choice(systems) + " question: " + _text(rng, 20)] for _ in range(args.requests)]


WORKLOADS = {"multi-turn": multi_turn, "system-prompt": system_prompt}


def _series(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


async def run(args: argparse.Namespace, workload: str, mode: str) -> dict:
    sim = {"model": MODEL, "port": 0, "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms, "block_size": args.block_size}
    prefills = [await start_sim(SimConfig(role="prefill", prefix_caching=True, tokenizer=str(args.tokenizer),
                                          kv_events_port=0, serial_prefill=True, num_gpu_blocks=args.gpu_blocks,
                                          prefill_ms_per_token=args.prefill_ms_per_token, **sim))
                for _ in range(args.prefills)]
    decodes = [await start_sim(SimConfig(role="decode", **sim)) for _ in range(args.decodes)]
    backends = [{"url": s.url, "pool": "prefill", "kv_events": s.kv_events, "block_size": args.block_size} for s in prefills]
    backends += [{"url": s.url, "pool": "decode"} for s in decodes]
    config = {"model": MODEL, "backends": backends, "health": {"interval_s": 0.2}}
    if mode == "prefix":
        # The simulator caches one full-attention group, whatever the model's layers.
        config["prefix_routing"] = {"tokenizer": str(args.tokenizer), "hybrid_kv_cache_manager": False}
    router = await start_router(RouterConfig.model_validate(config), port=0)
    try:
        while not all(b.health == "healthy" for b in router.router.registry) or (
                mode == "prefix" and (router.router.proxy.prefix.layout is None
                                      or any(router.router.registry.get(s.url).kv_index is None for s in prefills))):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # ZMQ subscriptions up
        sessions = WORKLOADS[workload](args)
        gate = asyncio.Semaphore(args.concurrency)
        outputs = []
        url = router.url + "/v1/completions"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def session(prompts: list[str]) -> None:
                async with gate:
                    for prompt in prompts:
                        outputs.append(await stream_completion(http, url, MODEL, prompt, 0, args.max_tokens))

            started = time.perf_counter()
            await asyncio.gather(*(session(s) for s in sessions))
            elapsed = time.perf_counter() - started
            queries = hits = 0.0
            for s in prefills:
                async with http.get(s.url + "/metrics") as resp:
                    text = await resp.text()
                queries += _series(text, "vllm:prefix_cache_queries_total")
                hits += _series(text, "vllm:prefix_cache_hits_total")
    finally:
        await router.stop()
        for s in [*prefills, *decodes]:
            await s.stop()
    ok = [o for o in outputs if o.success]
    ttfts = sorted(o.ttft * 1000 for o in ok)
    return {
        "workload": workload, "mode": mode, "requests": len(outputs), "failed": len(outputs) - len(ok),
        "ttft_p50_ms": statistics.median(ttfts), "ttft_p99_ms": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "prompt_tokens": int(queries), "computed_tokens": int(queries - hits),
        "req_per_s": len(ok) / elapsed, "out_tok_per_s": sum(o.output_tokens for o in ok) / elapsed,
    }


def render(rows: list[dict], checks: list[tuple[str, bool, str]]) -> str:
    head = f"{'workload':<14}{'mode':<16}{'req':>6}{'fail':>5}{'TTFT p50':>10}{'TTFT p99':>10}" \
           f"{'prompt tok':>12}{'computed':>10}{'req/s':>8}{'tok/s':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['workload']:<14}{r['mode']:<16}{r['requests']:>6}{r['failed']:>5}{r['ttft_p50_ms']:>10.1f}"
                     f"{r['ttft_p99_ms']:>10.1f}{r['prompt_tokens']:>12}{r['computed_tokens']:>10}"
                     f"{r['req_per_s']:>8.1f}{r['out_tok_per_s']:>9.0f}")
    lines.append("")
    lines += [f"{'PASS' if ok else 'FAIL'}  {what}: {detail}" for what, ok, detail in checks]
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[tuple[str, bool, str]]:
    checks = []
    for workload in WORKLOADS:
        p = next(r for r in rows if r["workload"] == workload and r["mode"] == "prefix")
        b = next(r for r in rows if r["workload"] == workload and r["mode"] == "least-inflight")
        checks.append((f"{workload}: fewer prefill tokens computed", p["computed_tokens"] < b["computed_tokens"],
                       f"{p['computed_tokens']} vs {b['computed_tokens']}"))
        checks.append((f"{workload}: TTFT p50 not higher", p["ttft_p50_ms"] <= b["ttft_p50_ms"],
                       f"{p['ttft_p50_ms']:.1f} vs {b['ttft_p50_ms']:.1f} ms"))
        checks.append((f"{workload}: no failed request", p["failed"] == b["failed"] == 0, f"{p['failed']}, {b['failed']}"))
    return checks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefills", type=int, default=8)
    ap.add_argument("--decodes", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32, help="requests (multi-turn: conversations) in flight [32]")
    ap.add_argument("--conversations", type=int, default=64)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--turn-words", type=int, default=60, help="words per user message [60]")
    ap.add_argument("--system-prompts", type=int, default=8)
    ap.add_argument("--system-words", type=int, default=400)
    ap.add_argument("--requests", type=int, default=384, help="system-prompt workload requests [384]")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--gpu-blocks", type=int, default=2048, help="KV blocks per simulated prefill (cache capacity) [2048]")
    ap.add_argument("--prefill-ms-per-token", type=float, default=0.05)
    ap.add_argument("--ttft-ms", type=float, default=2.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and checks here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tokenizer == TOKENIZER:
        ensure_model("tiny-gpt-oss", TOKENIZER)
    rows = []
    for workload in WORKLOADS:
        for mode in ("least-inflight", "prefix"):
            rows.append(asyncio.run(run(args, workload, mode)))
            print(f"  {workload} {mode}: done", file=sys.stderr)
    checks = targets(rows)
    print(f"prefix_bench (SIMULATED engines): {args.prefills} prefills, {args.decodes} decodes, concurrency "
          f"{args.concurrency}, {args.prefill_ms_per_token} ms/prefill token (serial), block {args.block_size}, "
          f"{args.gpu_blocks} blocks/prefill")
    print(render(rows, checks))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "checks": checks}, indent=2))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
