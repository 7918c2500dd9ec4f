"""Conditional disaggregation: whether a request skips the prefill pool and goes to a decode whole.

Short prompts gain little from a separate prefill and pay the KV transfer; a saturated prefill pool
would add queueing to every request. Off by default; every decision is counted in the metrics.
"""

from __future__ import annotations

from typing import Any

from xpdctl.router.backends import Backend
from xpdctl.router.config import ConditionalDisagg

_CHARS_PER_TOKEN = 4  # a rough English BPE average; the threshold is a policy knob, not an exact count


def estimate_prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    if chat:
        chars = 0
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
        return chars // _CHARS_PER_TOKEN
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt) // _CHARS_PER_TOKEN
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    if isinstance(prompt, list):
        return max((estimate_prompt_tokens({"prompt": p}, False) for p in prompt), default=0)
    return 0


def decide(policy: ConditionalDisagg, body: dict[str, Any], chat: bool, prefills: list[Backend]) -> str | None:
    """None: disaggregate. Otherwise the reason to send the request to a decode whole."""
    if not policy.enabled:
        return None
    if estimate_prompt_tokens(body, chat) < policy.min_prompt_tokens:
        return "short_prompt"
    usable = [p for p in prefills if p.usable]
    if usable and all(p.load.waiting >= policy.prefill_saturation_waiting for p in usable):
        return "prefill_saturated"
    return None
