"""A vLLM reasoning-parser plugin for models without a reasoning channel (the tiny GPT-OSS model).

vLLM gives every GptOssForCausalLM the ``openai_gptoss`` reasoning parser, which only works inside
the Harmony chat format and its o200k vocabulary. The tiny model has a 1,024-token vocabulary and a
plain chat template, so its chat answers must pass through unparsed: all output is content.
Loaded by vLLM with ``--reasoning-parser-plugin <this file> --reasoning-parser xpdctl_plain``.
"""

from __future__ import annotations

from collections.abc import Sequence

from vllm.entrypoints.generate.base.protocol import DeltaMessage
from vllm.reasoning import ReasoningParser, ReasoningParserManager

NAME = "xpdctl_plain"


@ReasoningParserManager.register_module(NAME)
class PlainReasoningParser(ReasoningParser):
    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        return True

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        return input_ids

    def extract_reasoning(self, model_output, request):
        return None, model_output

    def extract_reasoning_streaming(
        self, previous_text, current_text, delta_text, previous_token_ids, current_token_ids, delta_token_ids
    ) -> DeltaMessage | None:
        return DeltaMessage(content=delta_text) if delta_text else None
