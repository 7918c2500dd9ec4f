"""Fixtures of the real-vLLM tier (the shared cluster itself and the test order are in tests/conftest.py)."""

from __future__ import annotations

import functools

import prompts
import pytest


@pytest.fixture(scope="session")
def tokenizer(local_cluster):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(local_cluster.model_path)


@pytest.fixture(scope="session")
def prompt_of(tokenizer):
    """prompt_of(n) -> text that the model's tokenizer turns into exactly n tokens."""
    return functools.partial(prompts.prompt_of, tokenizer)
