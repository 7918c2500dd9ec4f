"""Fixtures of the bench tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tiny GPT-OSS model's byte-level BPE tokenizer (built locally, as `xpdctl up` builds it)."""
    from transformers import AutoTokenizer

    from xpdctl.models.tiny_gpt_oss import build

    folder = tmp_path_factory.mktemp("tiny-model")
    build(folder)
    return AutoTokenizer.from_pretrained(str(folder)), folder
