"""Deterministic text: what a greedy model would do, as a pure function of the prompt.

The same prompt always gives the same tokens, so a decode instance fed KV from a prefill instance
produces exactly what an aggregated instance produces: the correctness check of every PD path.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

_WORDS = (
    "the of and to in is that for it as with was on be by at this from or an are not have but one "
    "all they we can were there which their has more if will about up out so what when time into "
    "other some them only new then these two may first any like now over such our even most made "
    "after also did many well way must where much should through long down each great just those "
    "kernel prefill decode cache block token stream router engine vendor memory bandwidth tensor"
).split()
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


class PromptError(ValueError):
    """The request carries no prompt the simulator understands."""


def prompt_key(body: dict[str, Any], chat: bool) -> tuple[str, int]:
    """The prompt as one canonical string, and its length in (approximate) tokens."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise PromptError("'messages' must be a non-empty list")
        text = "\n".join(f"{m.get('role', '')}: {_content_text(m.get('content'))}" for m in messages if isinstance(m, dict))
        return text, _count(text)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt, _count(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return " ".join(map(str, prompt)), len(prompt)
    raise PromptError("'prompt' must be one string or one list of token ids (the simulator serves one prompt per request)")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _count(text: str) -> int:
    return max(1, len(_TOKEN_RE.findall(text)))


def digest(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def tokens(key: str, count: int) -> list[str]:
    rng = random.Random(hashlib.blake2b(key.encode(), digest_size=8).digest())
    return [" " + _WORDS[rng.randrange(len(_WORDS))] for _ in range(count)]
