"""The prefill/decode request contract of vLLM's NixlConnector (REFERENCE section 1), as data.

The prefill leg computes the prompt only (one token, not streamed) and announces a remote decode;
the decode leg is the client's own request plus the ``kv_transfer_params`` the prefill returned.
"""

from __future__ import annotations

from typing import Any

_ASK_FOR_REMOTE_DECODE = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def problem(body: Any, chat: bool) -> str | None:
    """Why the client's request cannot be served (a 400), or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required (a string naming the served model; see GET /v1/models)"
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' is required (a non-empty list of chat messages)"
    elif body.get("prompt") in (None, "", []):
        return "'prompt' is required (a string, a list of strings or a list of token ids)"
    return None


def prefill_request(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    leg = dict(body)
    leg.pop("stream_options", None)
    leg.pop("min_tokens", None)
    leg["stream"] = False
    leg["max_tokens"] = 1
    if chat:
        leg["max_completion_tokens"] = 1
    leg["kv_transfer_params"] = dict(_ASK_FOR_REMOTE_DECODE)
    return leg


def decode_request(body: dict[str, Any], kv_transfer_params: dict[str, Any]) -> dict[str, Any]:
    leg = dict(body)
    leg["kv_transfer_params"] = kv_transfer_params
    return leg


def kv_transfer_params(prefill_response: Any) -> dict[str, Any] | None:
    """vLLM returns them at the top level of the prefill's JSON answer."""
    if isinstance(prefill_response, dict) and isinstance(prefill_response.get("kv_transfer_params"), dict):
        return prefill_response["kv_transfer_params"]
    return None
