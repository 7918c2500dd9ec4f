"""Fixtures of the real-vLLM tier (the shared cluster itself and the test order are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer(local_cluster):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_cluster.model_path)


_WORDS = ("the prefill engine reads every token of the prompt while the decode engine writes the answer "
          "and the kv cache moves between them through host memory over nixl and ucx").split()


@pytest.fixture(scope="session")
def prompt_of(tokenizer):
    """prompt_of(n) -> text that the model's tokenizer turns into exactly n tokens."""

    def make(n: int) -> str:
        words = " ".join(_WORDS[i % len(_WORDS)] + (str(i) if i % 7 == 0 else "") for i in range(n * 2))
        ids = tokenizer(words, add_special_tokens=False)["input_ids"][:n]
        text = tokenizer.decode(ids)
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == n
        return text

    return make
