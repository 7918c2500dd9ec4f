"""A small OpenAI-style HTTP client for the real-vLLM tier: greedy requests, streamed or not."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    text: str  # generated text (joined across chunks when streamed)
    body: dict | None  # parsed JSON of a non-streamed answer or error
    events: list  # parsed SSE data events of a streamed answer ("[DONE]" kept as a string)
    prompt_tokens: int | None = None


def _text_of(choice: dict, chat: bool, streamed: bool) -> str:
    if not chat:
        return choice.get("text") or ""
    part = choice.get("delta" if streamed else "message") or {}
    return part.get("content") or ""


def call(base_url: str, model: str, prompt: str, *, chat: bool, stream: bool, max_tokens: int = 24,
         timeout_s: float = 600) -> Answer:
    """One greedy request; never raises on HTTP errors (the tests look at them)."""
    body: dict = {"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    path = "/v1/chat/completions" if chat else "/v1/completions"
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return Answer(status=exc.code, text="", body=parsed, events=[])
    with resp:
        if not stream:
            parsed = json.loads(resp.read())
            return Answer(status=resp.status, text=_text_of(parsed["choices"][0], chat, False), body=parsed,
                          events=[], prompt_tokens=(parsed.get("usage") or {}).get("prompt_tokens"))
        events, text, prompt_tokens = [], [], None
        for line in resp:
            line = line.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                events.append(data)
                continue
            event = json.loads(data)
            events.append(event)
            for choice in event.get("choices") or []:
                text.append(_text_of(choice, chat, True))
            if event.get("usage"):
                prompt_tokens = event["usage"].get("prompt_tokens")
        return Answer(status=resp.status, text="".join(text), body=None, events=events, prompt_tokens=prompt_tokens)
