"""One real request through the router: the last step of ``up`` and the curl line it prints."""

from __future__ import annotations

import json
import shlex
import ssl
import time
import urllib.error
import urllib.request

from pydantic import BaseModel

from xpdctl.errors import UnhealthyError

SMOKE_PROMPT = "The prefill engine read this prompt and the decode engine wrote"


class SmokeResult(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def completion_body(model: str, max_tokens: int = 16) -> dict:
    return {"model": model, "prompt": SMOKE_PROMPT, "max_tokens": max_tokens, "temperature": 0}


def curl_line(router_url: str, model: str, keyed: bool = False, ca_file: str | None = None) -> str:
    body = json.dumps(completion_body(model))
    key = " -H \"Authorization: Bearer $XPDCTL_CLIENT_KEY\"" if keyed else ""
    ca = f" --cacert {shlex.quote(ca_file)}" if ca_file else ""
    return (
        f"curl -s{ca} {router_url}/v1/completions -H 'Content-Type: application/json'{key} "
        f"-d {shlex.quote(body)}"
    )


def smoke_request(router_url: str, model: str, *, timeout_s: float, api_key: str | None = None,
                  context: ssl.SSLContext | None = None) -> SmokeResult:
    """Send one greedy completion; retry while the router still waits for its backends to pass health checks."""
    deadline = time.monotonic() + timeout_s
    body = json.dumps(completion_body(model)).encode()
    last = ""
    while True:
        start = time.monotonic()
        request = urllib.request.Request(
            f"{router_url}/v1/completions", data=body,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=max(5.0, deadline - start), context=context) as resp:
                answer = json.loads(resp.read())
            usage = answer.get("usage") or {}
            return SmokeResult(
                text=answer["choices"][0]["text"],
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
                seconds=time.monotonic() - start,
            )
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
            if exc.code not in (502, 503, 504):
                break
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    raise UnhealthyError(
        f"the smoke request through the router at {router_url} failed: {last}; "
        "check `xpdctl status` and the router's log"
    )
