"""The token ids an engine will compute for a request, from the model's own tokenizer.

Completions: the prompt encoded with special tokens (vLLM's default ``add_special_tokens: true``
for completions), or the token ids the client sent. Chat: the model's chat template with the
generation prompt added, as vLLM renders chat for models that ship one. What the router gets wrong
here costs only cache hits, never a wrong answer: the engines tokenize for themselves.
GPT-OSS chat is rendered by vLLM with openai_harmony instead of the template
(vllm/entrypoints/openai/chat_completion/serving.py:167); the template renders the same harmony
format, but any difference in the first block's tokens loses every hit of that conversation.

The tokenizer loads in a thread after the router starts (transformers takes seconds to import); until
it has loaded, or when it cannot, routing is load-only (``state``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class PromptTokens:
    def __init__(self, model_dir: str):
        self.model_dir = Path(model_dir).expanduser()
        self.state = "loading"  # loading | ready | failed
        self.why = ""
        self._tokenizer = None

    async def load(self) -> None:
        try:
            self._tokenizer = await asyncio.to_thread(_load, self.model_dir)
        except Exception as exc:  # any failure of a tokenizer to load leaves the router serving, load-only
            self.state, self.why = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("prefix routing: the tokenizer at %s did not load (%s); routing by load only",
                        self.model_dir, self.why)
            return
        self.state = "ready"
        log.info("prefix routing: tokenizer loaded from %s", self.model_dir)

    def of(self, body: dict, chat: bool) -> list[int] | None:
        """The request's prompt token ids; None when they cannot be known (not loaded, several prompts)."""
        tokenizer = self._tokenizer
        if tokenizer is None:
            return None
        try:
            if chat:
                ids = tokenizer.apply_chat_template(
                    body["messages"], add_generation_prompt=True, tokenize=True, return_dict=False,
                    tools=body.get("tools"), **(body.get("chat_template_kwargs") or {}))
                return list(ids)
            prompt = body.get("prompt")
            if isinstance(prompt, str):
                add = body.get("add_special_tokens", True)
                return tokenizer.backend_tokenizer.encode(prompt, add_special_tokens=add).ids
            if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
                return prompt
        except Exception as exc:  # a template that rejects these messages: the engine will say why
            log.debug("prefix routing: cannot tokenize this request: %r", exc)
        return None


def _load(model_dir: Path):
    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json or tokenizer_config.json in {model_dir}: copy the model's "
                                "tokenizer files there, or point prefix_routing.tokenizer at them")
    # One request is tokenized at a time, on the router's one thread: the Rust thread pool that
    # tokenizers starts otherwise only costs CPU (0.29 against 0.38 ms of CPU for a 273-token prompt
    # here, measured with the bench prompts of benchmarks/router_bench.py).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer  # noqa: PLC0415 -- seconds to import; only when prefix routing is on

    # Never the hub: a missing file is an error to fix, not a download on a serving path.
    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
