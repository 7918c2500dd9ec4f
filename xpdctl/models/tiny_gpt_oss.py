"""A tiny random model of the GPT-OSS architecture, built locally and deterministically.

No model can be downloaded on the machines this runs on, yet the local cluster must exercise the same
KV path as gpt-oss-120b: mixture of experts, attention alternating between a sliding window and full
context, and a sliding window (32) shorter than ordinary prompts so the hybrid KV layout really
matters. The weights are random (seeded); the outputs are gibberish but deterministic, which is all
the PD-equals-aggregated correctness test needs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20260101
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|start|>", "<|message|>", "<|end|>"]
# Weights drawn wider than transformers' default (0.02) so that logits differ enough between
# positions for greedy decoding to vary with the context instead of repeating one token.
INIT_STD = 0.2

# vLLM serves every model of type gpt_oss through the Harmony chat format and its reasoning parser,
# both tied to the o200k vocabulary; the tiny model has its own 1,024-token vocabulary and a plain
# chat template. These arguments give it vLLM's ordinary chat path; the model code is unchanged
# (vLLM picks it by architecture, not by model type). The parser plugin is a file of the model's folder
# (CARRIED): the folder is what every host gets and every engine container mounts, xpdctl's tree is not.
PLUGIN = Path(__file__).with_name("plain_reasoning.py")
CARRIED = (PLUGIN,)


def vllm_args(model_dir: str) -> list[str]:
    return [
        "--hf-overrides", json.dumps({"model_type": "gpt_oss_tiny"}, separators=(",", ":")),
        "--reasoning-parser-plugin", f"{model_dir}/{PLUGIN.name}",
        "--reasoning-parser", "xpdctl_plain",
    ]  # fmt: skip


CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|start|>{{ message['role'] }}<|message|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant<|message|>{% endif %}"
)

_WORDS = """
the a an of to in on for with from by at as is was are be been it this that these those and or but
not no yes model token prefill decode cache memory host device layer head expert window attention
router request stream prompt answer server cluster vendor engine transfer block bandwidth latency
fast slow small large first last next every each some many few more less one two three four five
six seven eight nine ten hundred thousand time day night river mountain city village road bridge
tree flower stone cloud rain snow wind sun moon star light dark red green blue yellow white black
run walk read write build test check plan render start stop wait send receive open close carry
hold move keep give take make find know think say tell ask show learn teach lead follow turn
water fire earth air glass paper metal wood bread apple honey salt sugar coffee tea milk music
number letter word sentence story book page line table chair door window house garden school
""".split()
_PUNCTUATION = [".", ".", ".", ",", "?", "!", ";", ":"]


def training_text(n_sentences: int = 6000) -> list[str]:
    """Seeded synthetic text: words, numbers, punctuation, code-like lines and the chat markers."""
    rng = random.Random(SEED)
    lines = []
    for i in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        sentence = " ".join(words).capitalize() + rng.choice(_PUNCTUATION)
        if i % 7 == 0:
            sentence = f"def {words[0]}_{words[-1].strip('.,?!;:')}(x, y={i}):\n    return x + y  # {sentence}"
        lines.append(sentence)
    return lines


def _build_tokenizer(dest: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(dest)


# Its attention layout (what the router's prefix index models: xpdctl/router/kvlayout.py).
SLIDING_WINDOW = 32
LAYER_TYPES = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(4)]


def _config():
    from transformers import GptOssConfig

    layers = len(LAYER_TYPES)
    return GptOssConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=SLIDING_WINDOW,
        layer_types=LAYER_TYPES,
        max_position_embeddings=4096,
        initializer_range=INIT_STD,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        torch_dtype="bfloat16",
        tie_word_embeddings=False,
    )


def _build_weights(dest: Path) -> None:
    import torch
    from transformers import GptOssForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a 2 MB write needs no progress bar in `up`'s output
    torch.manual_seed(SEED)
    model = GptOssForCausalLM(_config()).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)


def build(dest: Path) -> None:
    """Write the tokenizer, config and weights into ``dest`` (an empty or missing directory)."""
    dest.mkdir(parents=True, exist_ok=True)
    _build_tokenizer(dest)
    _build_weights(dest)
    # A marker vLLM ignores: says where the directory came from, for people who find it on disk.
    (dest / "xpdctl-model.json").write_text(
        json.dumps({"builder": "tiny-gpt-oss", "seed": SEED, "vocab_size": VOCAB_SIZE}, indent=2) + "\n"
    )
