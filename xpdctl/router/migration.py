"""Request migration, as data: which requests may continue on another engine, the continuation
request, and the ledger of a stream (what the client got, in token ids) that rewrites the
continuation's events into the client's stream.

A continuation is always a completions request whose prompt is the original prompt's token ids plus
the ids already generated (vLLM's ``return_token_ids``, docs/router.md "Request migration" cites the
fields), so a chat continues exactly too; its events are rewritten in the original request's shape
and id, with usage counted as one answer.
"""

from __future__ import annotations

from typing import Any

import orjson

# A completions continuation of a chat carries over only what samples tokens; the rest of a chat
# request (messages, tools, template options) shaped the prompt, which is now token ids.
_SAMPLING = (
    "temperature", "top_p", "top_k", "min_p", "seed", "repetition_penalty", "stop_token_ids", "ignore_eos",
    "logit_bias", "allowed_token_ids", "bad_words", "skip_special_tokens", "spaces_between_special_tokens",
    "include_stop_str_in_output", "user", "priority", "stream_options", "min_tokens", "max_tokens",
)
_STRUCTURED = ("structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend")


def _greedy(body: dict[str, Any]) -> bool:
    # vLLM: temperature 0 is greedy (below 1e-5 it samples greedily); an absent temperature is the
    # model's generation_config default, 1.0 when it has none: sampling.
    temperature, top_k = body.get("temperature"), body.get("top_k")
    return (isinstance(temperature, (int, float)) and temperature < 1e-5) or top_k == 1


def refusal(body: dict[str, Any], chat: bool) -> str | None:
    """Why this request may not continue on another engine after a failure, or None (see docs/router.md)."""
    if (body.get("n") or 1) > 1 or (body.get("best_of") or 1) > 1:
        return "n"
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") or body.get("prompt_logprobs") is not None:
        return "logprobs"  # sent logprobs were computed in another batch on another engine: would not match
    if body.get("seed") is not None and not _greedy(body):
        return "seeded_sampling"  # a seeded sample is promised to repeat; a continuation draws anew
    if body.get("presence_penalty") or body.get("frequency_penalty"):
        return "output_penalties"  # they count generated tokens only, which become prompt
    if body.get("stop"):
        return "stop_strings"  # vLLM holds back text that may start a stop string: its ids were sent, its text not
    if any(body.get(k) for k in _STRUCTURED) or (body.get("response_format") or {}).get("type", "text") != "text":
        return "structured_output"  # the grammar's state would restart in the middle of the answer
    options = body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("continuous_usage_stats"):
        return "continuous_usage"
    if body.get("echo") or body.get("suffix") or body.get("continue_final_message"):
        return "echo"
    if chat:
        return "tools" if body.get("tools") else None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt) and len(prompt) > 1:
        return "multiple_prompts"
    return None


def continuation(body: dict[str, Any], chat: bool, prompt_ids: list[int], generated: list[int]) -> dict[str, Any]:
    """The completions request that continues ``body`` after ``generated`` (streamed, with token ids)."""
    if chat:
        leg = {k: body[k] for k in _SAMPLING if k in body}
        leg["model"] = body["model"]
        if body.get("max_completion_tokens"):
            leg["max_tokens"] = body["max_completion_tokens"]
    else:
        leg = dict(body)
    leg.pop("kv_transfer_params", None)
    leg["prompt"] = [*prompt_ids, *generated]
    if isinstance(leg.get("max_tokens"), int):
        leg["max_tokens"] -= len(generated)
    if isinstance(leg.get("min_tokens"), int):
        leg["min_tokens"] = max(0, leg["min_tokens"] - len(generated))
    leg["stream"] = True
    leg["return_token_ids"] = True
    return leg


class EngineError(Exception):
    """The engine sent an error event in place of tokens (vLLM does when its engine core dies)."""


class StreamLedger:
    """One client stream: ``feed`` takes upstream bytes and returns what the client gets (whole
    events only), noting the token ids it carried."""

    def __init__(self, chat: bool, keep_ids: bool):
        self.chat = chat
        self.keep_ids = keep_ids  # the client asked for token ids itself
        self.prompt_ids: list[int] | None = None
        self.ids: list[int] = []
        self.forwarded = False
        self.done = False  # data: [DONE] passed
        self.finished = False  # a finish_reason passed: the answer is complete but for usage and [DONE]
        self.refusal: str | None = None  # set when an event shows the stream cannot be continued
        self.head: dict[str, Any] = {}  # the client's id, created, model
        self.carried = 0  # tokens generated before the current leg
        self.continuing = False
        self.reasoning_details = False  # the engines add completion_tokens_details to a chat's usage
        self._before = self._last = b""
        self.error: EngineError | None = None  # the current leg sent an error event
        self._partial = b""

    def note_prefill_answer(self, answer: Any) -> None:
        """The prefill leg's chat answer shows whether the engines give a chat's usage
        ``completion_tokens_details``: vLLM does whenever it runs a reasoning parser (vLLM 0.32
        entrypoints/openai/chat_completion/serving.py:160, and :845-851 for a stream's final usage). A
        continuation is a completions stream, whose usage never has them."""
        used = answer.get("usage") if isinstance(answer, dict) else None
        self.reasoning_details = self.chat and isinstance(used, dict) and "completion_tokens_details" in used

    def new_leg(self) -> None:
        """The next bytes come from another leg: a continuation (a completions stream) once the client
        got something, else the request started over."""
        self._partial = b""
        self.error = None
        if self.forwarded:
            self.carried = len(self.ids)
            self.continuing = True

    def feed(self, chunk: bytes) -> bytes:
        """What the client gets of ``chunk``; an error event ends the leg: ``error`` is set, what came
        before it is still returned, nothing after it."""
        events = (self._partial + chunk).split(b"\n\n")
        self._partial = events.pop()
        parts = []
        for event in events:
            if not event:
                continue
            try:
                parts.append(self._event(event))
            except EngineError as exc:
                self.error = exc
                break
        out = b"".join(parts)
        if out:
            self.forwarded = True
            self._before, self._last = self._last, out
        return out

    @property
    def tail(self) -> bytes:
        """The last two pieces the client got: where a stream's usage event is (xpdctl.router.usage)."""
        return self._before + self._last

    def _event(self, event: bytes) -> bytes:
        if not event.startswith(b"data:"):
            return event + b"\n\n"  # comments and other fields pass as they are
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return event + b"\n\n"
        try:
            data = orjson.loads(payload)
        except ValueError as exc:
            raise EngineError(f"an event that is not JSON: {payload[:100]!r}") from exc
        if not isinstance(data, dict) or "error" in data:
            raise EngineError(str(data.get("error") if isinstance(data, dict) else data)[:300])
        if not self.head:
            self.head = {"id": data.get("id"), "created": data.get("created"), "model": data.get("model")}
        if self.prompt_ids is None:
            self.prompt_ids = data.get("prompt_token_ids") or _first_choice(data).get("prompt_token_ids")
        for choice in data.get("choices") or ():
            self.ids += choice.get("token_ids") or ()
            self.finished = self.finished or choice.get("finish_reason") is not None
            if self.chat and not self.continuing and any(v for k, v in (choice.get("delta") or {}).items() if k not in ("role", "content")):
                self.refusal = "chat_parser"  # reasoning or tool calls: a completions continuation would not parse them
        if self.continuing:
            return _sse(self._rewritten(data))
        if self.keep_ids:
            return event + b"\n\n"
        data.pop("prompt_token_ids", None)
        for choice in data.get("choices") or ():
            choice.pop("prompt_token_ids", None)
            choice.pop("token_ids", None)
        return _sse(data)

    def _rewritten(self, data: dict[str, Any]) -> dict[str, Any]:
        """A continuation's completions event as the client's own: its id, its shape, usage of one answer."""
        choices = []
        for choice in data.get("choices") or ():
            ids = {"token_ids": choice.get("token_ids")} if self.keep_ids else {}
            if self.chat:
                choices.append({"index": 0, "delta": {"content": choice.get("text", "")}, "logprobs": None,
                                "finish_reason": choice.get("finish_reason"), **ids})
            else:
                choices.append({"index": 0, "text": choice.get("text", ""), "logprobs": None,
                                "finish_reason": choice.get("finish_reason"), "stop_reason": choice.get("stop_reason"), **ids})
        out = {"id": self.head.get("id"), "object": "chat.completion.chunk" if self.chat else "text_completion",
               "created": self.head.get("created"), "model": self.head.get("model"), "choices": choices}
        used = data.get("usage")
        if isinstance(used, dict):
            prompt, completion = used.get("prompt_tokens"), used.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                used = {**used, "prompt_tokens": prompt - self.carried, "completion_tokens": completion + self.carried}
            if self.reasoning_details:
                # 0: a chat whose stream carried reasoning is not continued (chat_parser), and a
                # continuation's text reaches the client as content, unparsed.
                used = {"completion_tokens_details": {"reasoning_tokens": 0}, **used}
            out["usage"] = used
        return out

    def continuation_refusal(self) -> str | None:
        if self.refusal:
            return self.refusal
        if self.forwarded and self.prompt_ids is None:
            return "no_token_ids"  # the engine hid them (vLLM does behind a reasoning parser)
        return None


def _first_choice(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    return choices[0] if choices else {}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"
