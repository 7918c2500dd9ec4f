"""Random prompts of exact token lengths: with the engine's tokenizer, and the word approximation."""

from __future__ import annotations

import pytest

from xpdctl.bench.prompts import load_tokenizer, random_prompts
from xpdctl.errors import InputError
from xpdctl.sim.textgen import prompt_key


@pytest.mark.parametrize("length", [1, 7, 128, 1000])
def test_word_prompts_have_exact_length_for_the_simulator(length):
    prompts = random_prompts(5, length, seed=3)
    assert len({p.text for p in prompts}) == 5  # distinct: no prefix-cache effects between requests
    for p in prompts:
        assert p.tokens == length
        assert prompt_key({"prompt": p.text}, chat=False)[1] == length


@pytest.mark.parametrize("length", [3, 64, 700])
def test_tokenizer_prompts_encode_to_exactly_the_length(tiny_tokenizer, length):
    tokenizer, folder = tiny_tokenizer
    prompts = random_prompts(4, length, load_tokenizer(folder), seed=1)
    for p in prompts:
        assert p.tokens == length
        assert len(tokenizer(p.text)["input_ids"]) == length
    assert random_prompts(4, length, load_tokenizer(folder), seed=1) == prompts  # seeded


def test_missing_tokenizer_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path)
