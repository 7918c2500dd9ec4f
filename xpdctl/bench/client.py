"""One streamed completion, timed as ``vllm bench serve`` times it (its OpenAI-completions client).

- TTFT: from sending the request to the first SSE message carrying ``choices``.
- ITL: the gap between consecutive messages carrying ``choices`` (one per streamed output).
- Latency (E2EL): from sending to the last message carrying ``choices`` (not to ``[DONE]``).
- Output tokens: ``usage.completion_tokens`` of the final usage message; prompt tokens likewise.
  The whole message is kept (``usage_message``): keys a server adds there, e.g. the simulator's
  ``--timestamps``, reach the caller.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class RequestOutput:
    prompt_len: int
    success: bool = False
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    start_time: float = 0.0
    error: str = ""
    usage_message: dict | None = None


def completion_payload(model: str, prompt: str, max_tokens: int) -> dict:
    # What `vllm bench serve --backend openai --ignore-eos` sends.
    return {"model": model, "prompt": prompt, "repetition_penalty": 1.0, "max_tokens": max_tokens, "logprobs": None,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}


def _messages(buffer: bytearray) -> list[str]:
    """Complete SSE messages (``data: ...`` separated by a blank line) taken off the buffer."""
    out = []
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return out
        raw, buffer[:] = bytes(buffer[:end]), buffer[end + 2:]
        for line in raw.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                out.append(line.removeprefix("data:").strip())


async def stream_completion(session: aiohttp.ClientSession, url: str, model: str, prompt: str, prompt_len: int,
                            max_tokens: int, request_id: str | None = None, *, extra: dict | None = None,
                            start: float | None = None, api_key: str | None = None) -> RequestOutput:
    """``extra`` is merged into the request body; ``start`` (a ``time.perf_counter()`` value) times the
    request from an earlier moment, e.g. before a prefill leg the caller sent itself."""
    out = RequestOutput(prompt_len=prompt_len)
    headers = {"x-request-id": request_id} if request_id else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.perf_counter() if start is None else start
    out.start_time = start
    last = start
    payload = completion_payload(model, prompt, max_tokens) | (extra or {})
    try:
        async with session.post(url, json=payload, headers=headers) as resp:
            if resp.status != 200:
                out.error = f"HTTP {resp.status}: {(await resp.text())[:300]}"
                return out
            buffer = bytearray()
            first = False
            async for chunk in resp.content.iter_any():
                buffer.extend(chunk)
                for message in _messages(buffer):
                    if message == "[DONE]":
                        continue
                    data = json.loads(message)
                    if data.get("choices"):
                        now = time.perf_counter()
                        if not first:
                            first = True
                            out.ttft = now - start
                        else:
                            out.itl.append(now - last)
                        last = now
                    elif usage := data.get("usage"):
                        out.usage_message = data
                        out.output_tokens = usage.get("completion_tokens") or 0
                        if usage.get("prompt_tokens") is not None:
                            out.prompt_len = usage["prompt_tokens"]
            if first:
                out.success = True
            else:
                out.error = "never received a streamed output: no TTFT"
            out.latency = last - start
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out
