"""Measurement for the PD hop (issue 19 item 4), soak: is the prefill's first token the decode's first
token? vLLM 0.32 does not seed the decode with it: after the KV pull the decode recomputes the last
prompt position (v1/core/sched/scheduler.py:3171-3172, a full prompt hit keeps num_tokens - 1
computed) and samples token 1 itself, from logits computed by a one-token step over pulled KV where
the prefill computed them in its full prompt pass. Greedy on the same vendor, equal argmax is what
sending the prefill's token to the client at once would rely on. Prints the handover timing too."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request

import pytest

from xpdctl.router import pdcontract

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

LENGTHS = [16, 40, 90, 150, 230, 330, 450, 600]
PER_LENGTH = 4


def _post(url: str, body: dict) -> tuple[dict, float]:
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as resp:
        return json.loads(resp.read()), time.monotonic() - started


def test_the_prefill_first_token_equals_the_decode_first_token_greedy_same_vendor(local_cluster, prompt_of):
    services = {s["role"]: s["url"] for s in local_cluster.status()["services"] if s["role"] in ("prefill", "decode")}
    rows, differ = [], []
    for n in LENGTHS:
        for k in range(PER_LENGTH):
            prompt = f"{k} " + prompt_of(n)
            body = {"model": local_cluster.model, "prompt": prompt, "max_tokens": 4, "temperature": 0, "return_token_ids": True}
            first, prefill_s = _post(services["prefill"], pdcontract.prefill_request(body, chat=False))
            answer, decode_s = _post(services["decode"], pdcontract.decode_request(body, first["kv_transfer_params"]))
            p, d = first["choices"][0]["token_ids"][0], answer["choices"][0]["token_ids"][0]
            rows.append((n, prefill_s, decode_s))
            if p != d:
                differ.append((n, k, p, d))
    print(f"\nfirst token: prefill == decode for {len(rows) - len(differ)}/{len(rows)} greedy prompts; differ: {differ}")
    for n in LENGTHS:
        pre = [r[1] * 1000 for r in rows if r[0] == n]
        dec = [r[2] * 1000 for r in rows if r[0] == n]
        print(f"prompt {n:4d} tokens: prefill leg median {statistics.median(pre):7.1f} ms, decode leg (KV pull + 4 tokens) "
              f"median {statistics.median(dec):7.1f} ms")
    assert not differ
