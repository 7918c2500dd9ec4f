"""A small real tokenizer on disk (the `tokenizers` library's WordLevel model, loaded by transformers'
AutoTokenizer like any model's): what the router's prefix index and the simulator's prefix cache
tokenize with in tests that need no model weights. Word ids are stable: word i of WORDS is id i + 2."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [f"w{i}" for i in range(2000)] + ["you", "are", "a", "helpful", "assistant", "question", "answer", "turn"]


def write_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[BOS]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "[BOS]",
        "chat_template": "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant {% endif %}",
    }))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))  # one attention kind
    return folder


def ids(text: str) -> list[int]:
    """What the tokenizer makes of whitespace-separated known words."""
    return [WORDS.index(w) + 2 for w in text.split()]
