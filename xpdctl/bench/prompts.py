"""Random prompts of an exact number of tokens.

With the engine's tokenizer, this is vLLM's random dataset (``vllm bench serve --dataset-name
random --random-range-ratio 0``): token ids ``allowed[(offset + i + arange(n)) % len(allowed)]``
with a random offset per request, decoded to text, then re-encoded and trimmed or padded until the
text encodes to exactly n tokens; where byte fragments keep it from settling, a shorter prefix is
padded with whole words (the count is reported as generated if even that misses). Without a tokenizer (a simulator, or a model whose tokenizer is not on
this machine) the prompt is n words from a fixed list, separated by spaces: the simulator counts
each word as one token, and BPE tokenizers map such common words, each with its leading space, to one
token, so the length is close; the server's ``usage.prompt_tokens`` reports the real count either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpdctl.errors import InputError

_WORDS = (
    "the of and to in is that for it as with was on be by at this from or an are not have but one all they we "
    "can were there which their has more if will about up out so what when time into other some them only new "
    "then these two may first any like now over such our even most made after also did many well way must where"
).split()


@dataclass(frozen=True)
class Prompt:
    text: str
    tokens: int  # length as generated (the server's usage count replaces it when reported)


def load_tokenizer(path: str | Path):
    """A Hugging Face tokenizer from a local folder (no hub access on these machines)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise InputError("the transformers package is needed for --tokenizer; install it or leave --tokenizer out") from exc
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot load a tokenizer ({exc}); pass the model folder that holds tokenizer.json") from exc


def _pad_words(tokenizer, candidates: np.ndarray, rng: np.random.Generator, want: int = 64) -> list[str]:
    """Texts of single tokens that are a space and a word: appended after any text, each adds one token."""
    words = []
    for t in rng.permutation(candidates)[: 64 * want].tolist():
        text = tokenizer.decode([t])
        if text[:1] == " " and text[1:].isalpha() and tokenizer.encode(text, add_special_tokens=False) == [t]:
            words.append(text)
            if len(words) == want:
                break
    return words


def _decode_to_length(tokenizer, ids: list[int], target: int, pad: list[str], tries: int = 10) -> tuple[str, int]:
    """vLLM's gen_prompt_decode_to_target_len (decode, re-encode, trim), then, where byte-level
    fragments keep the count from settling, a shorter prefix padded with whole words to the target."""
    for _ in range(tries):
        text = tokenizer.decode(ids)
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == target:
            return text, target
        if len(ids) < target:
            break
        ids = ids[:target]
    count = len(tokenizer.encode(text, add_special_tokens=False))
    for keep in range(min(len(ids), target), max(-1, target - 64), -1):
        head = tokenizer.decode(ids[:keep])
        have = len(tokenizer.encode(head, add_special_tokens=False))
        if have > target or not pad:
            continue
        text = head + "".join(pad[i % len(pad)] for i in range(target - have))
        count = len(tokenizer.encode(text, add_special_tokens=False))
        if count == target:
            break
    return text, count


def random_prompts(count: int, length: int, tokenizer=None, seed: int = 0) -> list[Prompt]:
    rng = np.random.default_rng(seed)
    if tokenizer is None:
        prompts = []
        for i in range(count):
            start = int(rng.integers(0, len(_WORDS)))
            words = [_WORDS[(start + i + j) % len(_WORDS)] for j in range(length)]
            prompts.append(Prompt(" ".join(words), length))
        return prompts
    special = int(tokenizer.num_special_tokens_to_add())
    real_length = max(1, length - special)
    banned = set(tokenizer.all_special_ids)
    allowed = np.array([t for t in range(tokenizer.vocab_size) if t not in banned])
    offsets = rng.integers(0, tokenizer.vocab_size, size=count)
    pad = _pad_words(tokenizer, allowed, rng)
    prompts = []
    for i in range(count):
        ids = allowed[(int(offsets[i]) + i + np.arange(real_length)) % len(allowed)].tolist()
        text, n = _decode_to_length(tokenizer, ids, real_length, pad)
        prompts.append(Prompt(text, n + special))
    return prompts
