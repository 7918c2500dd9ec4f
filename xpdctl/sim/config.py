"""What a simulator instance is: role, model, timing and the faults it starts with."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Faults(_Strict):
    """Misbehaviour injected into generate requests (and /health); replaced as a whole via /sim/faults."""

    # Answer with this HTTP status (an OpenAI-style error body) before sending anything else.
    fail_status: int | None = Field(None, ge=400, le=599)
    # Drop the connection after this many generated tokens, as a crashed process would.
    fail_after_tokens: int | None = Field(None, ge=0)
    # Hold every response this long before its first byte (a slow or hung backend).
    first_byte_delay_ms: float = Field(0.0, ge=0)
    # Pause this long after this many streamed tokens (an idle upstream mid-stream).
    stall_after_tokens: int | None = Field(None, ge=0)
    stall_ms: float = Field(0.0, ge=0)
    # Status of GET /health, and how long it takes to answer (an engine starved of CPU).
    health_status: int = Field(200, ge=200, le=599)
    health_delay_ms: float = Field(0.0, ge=0)
    # Apply the generate faults to this many requests, then clear them; None: until replaced.
    times: int | None = Field(None, ge=1)
    # The KV event stream (prefix caching on): ok; garbage (undecodable payloads); silent (batches
    # dropped, so the stream shows a sequence gap when it is ok again). Not limited by ``times``.
    kv_events: Literal["ok", "garbage", "silent"] = "ok"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


class SimConfig(_Strict):
    role: Literal["prefill", "decode", "both"] = "both"
    model: str
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    ttft_ms: float = Field(20.0, ge=0)
    itl_ms: float = Field(10.0, ge=0)
    prefill_ms_per_token: float = Field(0.0, ge=0)
    kv_pull_ms: float = Field(1.0, ge=0)
    # Hardware-profile timing (xpdctl.perfmodel.simtiming) in place of the fixed numbers above.
    profile: str | None = None
    profile_tp: int = Field(8, ge=1)
    model_spec: str = "gpt-oss-120b"
    kv_path: Literal["host", "device"] = "host"  # how KV reaches this instance when it decodes
    time_scale: float = Field(1.0, gt=0)  # multiplies the profile's durations (tests run fast clocks)
    max_num_seqs: int = Field(256, ge=1)
    max_model_len: int = Field(4096, ge=2)
    num_gpu_blocks: int = Field(8192, ge=1)
    block_size: int = Field(16, ge=1)
    default_max_tokens: int = Field(16, ge=1)
    # vLLM's NIXL side channel: where a decode instance reaches this prefill instance for its KV.
    # 0 means "the HTTP port"; vLLM's own environment variables are honoured so rendered units work.
    side_channel_host: str = Field(default_factory=lambda: os.environ.get("VLLM_NIXL_SIDE_CHANNEL_HOST", ""))
    side_channel_port: int = Field(default_factory=lambda: _env_int("VLLM_NIXL_SIDE_CHANNEL_PORT", 0))
    # Prefill keeps KV blocks for a decode this long, then frees them (vLLM: VLLM_NIXL_ABORT_REQUEST_TIMEOUT).
    kv_lease_s: float = Field(default_factory=lambda: float(_env_int("VLLM_NIXL_ABORT_REQUEST_TIMEOUT", 480)))
    # vLLM's prefix caching (xpdctl/sim/prefixcache.py): prompts tokenized with the model's tokenizer
    # (required: the router hashes the same token ids), cached blocks not computed again, KV events
    # published on tcp://<host>:<kv_events_port> (0: a free port) with vLLM's wire format.
    prefix_caching: bool = False
    tokenizer: str | None = None
    kv_events_port: int | None = Field(None, ge=0, le=65535)
    # One prompt computed at a time (a prefill engine's compute is one resource): requests queue for
    # prefill_ms_per_token x uncached tokens each, so tokens a cache saves shorten everyone's wait.
    serial_prefill: bool = False
    # Opt-in: arrival and token times in the answers (xpdctl.sim.stamps), so a benchmark on the same
    # machine can subtract the engines' own time request by request.
    timestamps: bool = False
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _prefix_caching_has_a_tokenizer(self) -> SimConfig:
        if self.prefix_caching and not self.tokenizer:
            raise ValueError("prefix_caching needs tokenizer (the model's folder): the router hashes the token ids "
                             "the model's tokenizer gives")
        return self

    def advertised_side_channel_host(self) -> str:
        if self.side_channel_host:
            return self.side_channel_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
