"""Greedy outputs through our router (prefill on one vLLM, KV pulled by NIXL, decode on another) equal
those of one aggregated vLLM instance, for prompts shorter and much longer than the sliding window (32)
of the tiny GPT-OSS model, for completions and chat, streamed and not.

Equal text from the two paths means the decode engine attended over exactly the KV the prefill engine
computed, in both the sliding-window and the full-attention layers: the correctness test of the KV path.
"""

from __future__ import annotations

import functools

import pytest

from vllm_client import call

pytestmark = pytest.mark.vllm

# 5 (shorter than the window), 33 (just past it), 300, 1,500 (many windows, several KV blocks of 128).
PROMPT_TOKENS = [5, 33, 300, 1500]


@pytest.fixture(scope="module")
def reference(aggregated_url, local_cluster, prompt_of):
    @functools.cache
    def answer(n: int, chat: bool):
        got = call(aggregated_url, local_cluster.model, prompt_of(n), chat=chat, stream=False)
        assert got.status == 200, got.body
        return got

    return answer


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("n", PROMPT_TOKENS)
def test_router_output_equals_aggregated(local_cluster, reference, prompt_of, n, chat, stream):
    expected = reference(n, chat)
    got = call(local_cluster.router_url, local_cluster.model, prompt_of(n), chat=chat, stream=stream)
    assert got.status == 200, got.body
    assert got.prompt_tokens == expected.prompt_tokens
    if not chat:
        assert got.prompt_tokens == n
    assert expected.text  # a model that answers nothing would make the comparison empty
    assert got.text == expected.text
    if stream:
        assert got.events[-1] == "[DONE]"
        assert len(got.events) > 2  # streamed in pieces, not one blob


def test_answer_ids_and_usage_come_from_the_decode_engine(local_cluster, prompt_of):
    got = call(local_cluster.router_url, local_cluster.model, prompt_of(40), chat=False, stream=False, max_tokens=8)
    assert got.status == 200
    assert got.body["usage"]["prompt_tokens"] == 40
    assert got.body["usage"]["completion_tokens"] <= 8
    assert got.body["id"].startswith("cmpl-")
