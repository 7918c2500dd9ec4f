"""Deterministic text: what a greedy model would do, as a pure function of the prompt's token ids.

The same prompt always gives the same tokens, so a decode instance fed KV from a prefill instance
produces exactly what an aggregated instance produces: the correctness check of every PD path. Each
token is a function of every token before it (a chained hash), prompt and generated alike, so a
request resubmitted as prompt plus the tokens already generated continues with exactly the tokens an
uninterrupted run gives next: what request migration relies on, as with a greedy model.
"""

from __future__ import annotations

import hashlib
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
    """The prompt as one canonical string, and its length in tokens."""
    key, ids = parse_prompt(body, chat)
    return key, len(ids)


def parse_prompt(body: dict[str, Any], chat: bool) -> tuple[str, list[int]]:
    """The prompt as one canonical string, and its token ids (a chat's messages as one templated text)."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise PromptError("'messages' must be a non-empty list")
        text = "\n".join(f"{m.get('role', '')}: {_content_text(m.get('content'))}" for m in messages if isinstance(m, dict))
        return text, encode(text)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt, encode(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
        return " ".join(map(str, prompt)), list(prompt)
    raise PromptError("'prompt' must be one string or one list of token ids (the simulator serves one prompt per request)")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


_IDS = {word: i for i, word in enumerate(_WORDS)}
_OTHER_WORDS = 1 << 20  # ids of prompt words outside the vocabulary: hashed above it


def encode(text: str) -> list[int]:
    """Token ids of ``text``: one per word or punctuation mark; the words generated come back as their own ids."""
    ids = [_IDS.get(w, len(_WORDS) + _hash(w.encode()) % _OTHER_WORDS) for w in _TOKEN_RE.findall(text)]
    return ids or [len(_WORDS)]  # an empty prompt still counts one token, as a BOS would


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _step(state: bytes, token_id: int) -> bytes:
    return hashlib.blake2b(state + token_id.to_bytes(8, "little"), digest_size=8).digest()


def digest(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def generate(prompt_ids: list[int], count: int) -> list[int]:
    """The next ``count`` token ids after ``prompt_ids``."""
    state = bytes(8)
    for token_id in prompt_ids:
        state = _step(state, token_id)
    out = []
    for _ in range(count):
        token_id = int.from_bytes(state[:4], "little") % len(_WORDS)
        out.append(token_id)
        state = _step(state, token_id)
    return out


def text_of(token_id: int) -> str:
    return " " + _WORDS[token_id]
