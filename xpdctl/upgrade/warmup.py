"""One request through a chosen prefill->decode pair, before the router sends it clients.

A new pair's first NIXL handshake takes seconds (about 5 s per new pair, and a
restarted prefill leaves decodes failing until they handshake again: vllm issue 49238): paying it here, and seeing
it succeed, is what admits an upgraded instance. The legs follow the router's own contract
(``xpdctl.router.pdcontract``), sent straight to the two engines.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from xpdctl.errors import ExecutionError
from xpdctl.router import pdcontract

WARMUP_PROMPT = "A warm-up request checks that this prefill and this decode exchange KV before clients arrive"


def _post(url: str, body: dict, timeout_s: float, api_key: str | None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def warm_pair(prefill_url: str, decode_url: str, model: str, *, timeout_s: float, max_tokens: int = 4,
              api_key: str | None = None) -> float:
    """Send the request; return its seconds. Raises ExecutionError with what the pair answered."""
    body = {"model": model, "prompt": WARMUP_PROMPT, "max_tokens": max_tokens, "temperature": 0}
    start = time.monotonic()
    try:
        first = _post(f"{prefill_url}/v1/completions", pdcontract.prefill_request(body, chat=False), timeout_s, api_key)
        params = pdcontract.kv_transfer_params(first)
        if params is None:
            raise ExecutionError(f"prefill {prefill_url} answered without kv_transfer_params; is it a PD prefill?")
        answer = _post(f"{decode_url}/v1/completions", pdcontract.decode_request(body, params), timeout_s, api_key)
    except urllib.error.HTTPError as exc:
        raise ExecutionError(
            f"warm-up {prefill_url} -> {decode_url}: HTTP {exc.code} {exc.read()[:300].decode(errors='replace')}"
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ExecutionError(f"warm-up {prefill_url} -> {decode_url}: {exc}") from exc
    if not answer.get("choices"):
        raise ExecutionError(f"warm-up {prefill_url} -> {decode_url}: the decode answered without choices")
    return time.monotonic() - start
