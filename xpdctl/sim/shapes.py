"""The JSON shapes vLLM's OpenAI server answers with (completions and chat, whole and streamed)."""

from __future__ import annotations

import json
from typing import Any


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }


def completion(rid: str, created: int, model: str, text: str, finish: str, use: dict, kv: dict | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None, "prompt_logprobs": None}],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": use,
        "kv_transfer_params": kv,
    }


def chat_completion(rid: str, created: int, model: str, text: str, finish: str, use: dict, kv: dict | None) -> dict[str, Any]:
    message = {"role": "assistant", "content": text, "refusal": None, "annotations": None, "audio": None,
               "function_call": None, "tool_calls": [], "reasoning_content": None}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish, "stop_reason": None}],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": use,
        "prompt_logprobs": None,
        "kv_transfer_params": kv,
    }


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
TOKEN_MARK = "\u0000token\u0000"
TOKEN_ID_MARK = "\u0000token_id\u0000"


def sse_template(chunk: dict[str, Any]) -> list[bytes]:
    """The SSE event of ``chunk`` split around TOKEN_MARK and, when the chunk has one, TOKEN_ID_MARK: per
    token, only the token's text (and id) are encoded."""
    head, rest = json.dumps(chunk, separators=(",", ":")).split(json.dumps(TOKEN_MARK))
    parts = [head, *rest.split(json.dumps(TOKEN_ID_MARK))]
    return [b"data: " + parts[0].encode(), *(p.encode() for p in parts[1:-1]), parts[-1].encode() + b"\n\n"]


def completion_chunk(rid: str, created: int, model: str, text: str, finish: str | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}],
    }


def chat_chunk(rid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(rid: str, created: int, model: str, chat: bool, use: dict) -> dict[str, Any]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": use}


def error(status: int, message: str) -> dict[str, Any]:
    kinds = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}
    return {"error": {"message": message, "type": kinds.get(status, "InternalServerError"), "param": None, "code": status}}
