"""Tokens a request used, read from the engine's own ``usage`` (prompt plus generated).

A whole answer carries it at the top level; a stream carries it in its last data event when the
request asked for ``stream_options.include_usage`` (the router asks on behalf of keyed clients, see
``with_stream_usage``). Only the tail of a stream is looked at: the proxy passes every chunk through
unparsed, and the usage event is the last one before ``data: [DONE]``.
"""

from __future__ import annotations

import orjson


def with_stream_usage(body: dict) -> bool:
    """Makes a streamed request ask for its usage; True when the body changed."""
    if not body.get("stream"):
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def _tokens(usage: object) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def of_body(body: bytes) -> tuple[int, int] | None:
    try:
        data = orjson.loads(body)
    except ValueError:
        return None
    return _tokens(data.get("usage")) if isinstance(data, dict) else None


def of_stream_tail(tail: bytes) -> tuple[int, int] | None:
    """``tail``: the last bytes of an SSE stream (at least its last two events)."""
    at = tail.rfind(b'"usage":')
    if at < 0:
        at = tail.rfind(b'"usage" :')
    if at < 0:
        return None
    start = tail.rfind(b"data:", 0, at)
    end = tail.find(b"\n", at)
    if start < 0:
        return None
    try:
        event = orjson.loads(tail[start + 5:end if end >= 0 else len(tail)])
    except ValueError:
        return None
    return _tokens(event.get("usage")) if isinstance(event, dict) else None
