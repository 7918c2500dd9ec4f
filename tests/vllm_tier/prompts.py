"""Prompts of an exact number of tokens of the tiny model (the vLLM tier and the containers soak test)."""

from __future__ import annotations

_WORDS = ("the prefill engine reads every token of the prompt while the decode engine writes the answer "
          "and the kv cache moves between them through host memory over nixl and ucx").split()


def prompt_of(tokenizer, n: int) -> str:
    """Text that ``tokenizer`` turns into exactly ``n`` tokens."""
    words = " ".join(_WORDS[i % len(_WORDS)] + (str(i) if i % 7 == 0 else "") for i in range(n * 2))
    ids = tokenizer(words, add_special_tokens=False)["input_ids"][:n]
    text = tokenizer.decode(ids)
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == n
    return text
