"""The router's configuration file: written by ``render``, read by ``xpdctl router --config``.

This schema is the contract between the plan and the router; add fields with defaults only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from xpdctl.disagg_defaults import MIN_PROMPT_TOKENS
from xpdctl.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listen(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)


class Backend(_Strict):
    url: str
    pool: Literal["prefill", "decode"]
    # Only a prefill and a decode of the same generation are ever paired: the plan gives one label to
    # every instance whose KV-compatibility factors are equal (see xpdctl.inventory.kvcompat).
    generation: str = "default"
    name: str = ""
    # The engine's KV event publisher (ZMQ, e.g. tcp://10.0.0.11:5700) and block size: with
    # prefix_routing on, the router indexes what the engine has cached (docs/router.md).
    kv_events: str | None = Field(None, pattern=r"^tcp://")
    block_size: int | None = Field(None, ge=1)


class Health(_Strict):
    interval_s: float = 5.0
    timeout_s: float = 2.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2


class Timeouts(_Strict):
    connect_s: float = 5.0
    first_byte_s: float = 600.0
    idle_s: float = 120.0


class Queue(_Strict):
    # Requests admitted at once; beyond that they wait, and beyond max_waiting they get 429.
    max_in_flight: int = 1024
    max_waiting: int = 256
    wait_timeout_s: float = 60.0


class ConditionalDisagg(_Strict):
    enabled: bool = False
    # Prompts shorter than this (estimated tokens) go to the decode pool whole.
    min_prompt_tokens: int = Field(MIN_PROMPT_TOKENS, ge=1)
    # A prefill pool whose every backend has at least this many waiting requests counts as saturated.
    prefill_saturation_waiting: int = 8


class Admin(_Strict):
    # The admin API is off unless a token is configured. token_file keeps the secret out of the config.
    token: str | None = None
    token_file: Path | None = None
    # Name of an environment variable holding the token: what `render` uses, so the secret lives only
    # in the router's 0600 env file.
    token_env: str | None = None

    def resolved_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            return self.token_file.read_text().strip() or None
        if self.token_env:
            return os.environ.get(self.token_env) or None
        return None


class Limits(_Strict):
    # None: no limit of that kind. See docs/router.md (Client keys) for how each is counted.
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)  # prompt plus generated, from the engines' usage
    max_concurrent: int | None = Field(None, ge=1)


class ClientKey(Limits):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # in metrics and logs; not secret
    # sha256 of the key, hex: the config never holds a key. Keys are random and long (at least 32
    # characters, checked where they are read), so an unsalted hash gives nothing to guess from.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Auth(_Strict):
    # open: anyone who reaches the router is served; keys: only requests with a listed key.
    mode: Literal["open", "keys"] = "open"
    keys: list[ClientKey] = []

    @model_validator(mode="after")
    def _keys_mode_has_unique_keys(self) -> Auth:
        if self.mode == "keys" and not self.keys:
            raise ValueError("auth.mode keys lists no key: every request would be refused; add keys or use mode open")
        for field in ("id", "sha256"):
            values = [getattr(k, field) for k in self.keys]
            if len(set(values)) != len(values):
                raise ValueError(f"auth.keys: two keys share one {field}; each client key is listed once")
        return self


class Tls(_Strict):
    # PEM files on the router's host; a reload reads them again (docs/router.md, TLS). Relative paths
    # are relative to the config file's folder (rendered configs name files rendered beside them).
    cert_file: Path
    key_file: Path

    def beside(self, config: Path) -> Tls:
        return Tls(cert_file=config.parent / self.cert_file, key_file=config.parent / self.key_file)


class Tracing(_Strict):
    # OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces; unset, no span is made
    # (the client's traceparent still reaches both legs). xpdctl/router/tracing.py.
    otlp_endpoint: str | None = Field(None, pattern=r"^https?://")


class Migration(_Strict):
    # A decode leg that breaks (connection lost, idle past timeouts.idle_s, an error event) continues
    # on another pair: prompt plus the tokens already sent (docs/router.md, Request migration).
    enabled: bool = True
    # Continuation legs tried per request (each on a decode not tried before).
    max_attempts: int = Field(2, ge=1)
    # From the first failure until a continuation answers; past it the request ends as without migration.
    window_s: float = Field(30.0, gt=0)


class PrefixRouting(_Strict):
    # The model's folder on the router's host (tokenizer files and config.json); None: prefix routing
    # off, every pick by load alone. docs/router.md (Prefix-aware routing) has the scoring rule.
    tokenizer: str | None = None
    # Whether the engines run vLLM's hybrid KV cache manager (one KV cache group per attention kind).
    hybrid_kv_cache_manager: bool = True
    # A prefill's cost = prompt tokens it must compute + load_weight x the uncached tokens queued on it.
    load_weight: float = Field(1.0, ge=0)
    # An engine sent a request that publishes no KV event for this long has its index dropped.
    silence_s: float = Field(10.0, gt=0)


class RouterConfig(_Strict):
    listen: Listen = Listen()
    tls: Tls | None = None  # None: plain HTTP
    # The model name clients send; /v1/models lists it.
    model: str
    backends: list[Backend] = []
    health: Health = Health()
    timeouts: Timeouts = Timeouts()
    queue: Queue = Queue()
    prefill_retries: int = 1
    # A decode that refused or never completed the connection did not get the request, so the
    # prefill's KV is still held for a pull: the decode leg goes to another decode (or the same
    # one once more) up to this many times. A decode that answered anything is never retried.
    decode_connect_retries: int = Field(2, ge=0)
    # When every prefill attempt failed (or none is usable), serve the request on a decode whole
    # instead of answering with an error. Off: llm-d removed this implicit fallback as a source of
    # surprises (a slow decode pool with no sign of why); counted in the conditional-disagg metric.
    decode_only_on_prefill_failure: bool = False
    conditional_disagg: ConditionalDisagg = ConditionalDisagg()
    admin: Admin = Admin()
    auth: Auth = Auth()
    # Name of an environment variable holding the engines' internal API key (vLLM's VLLM_API_KEY),
    # presented on every leg; the client's own Authorization never reaches an engine.
    engine_api_key_env: str | None = None
    # KV agents whose /pairs report is consulted: a pair reported broken is not used.
    kv_agents: list[str] = []
    kv_agent_poll_interval_s: float = 5.0
    load_scrape_interval_s: float = 1.0
    tracing: Tracing = Tracing()
    migration: Migration = Migration()
    prefix_routing: PrefixRouting = PrefixRouting()

    @model_validator(mode="after")
    def _one_entry_per_url(self) -> RouterConfig:
        urls = [b.url.rstrip("/") for b in self.backends]
        twice = sorted({u for u in urls if urls.count(u) > 1})
        if twice:
            raise ValueError(f"backend URL(s) listed twice: {', '.join(twice)}; each engine belongs to one pool once")
        return self


def load_router_config(path: Path) -> RouterConfig:
    return parse_router_config(read_router_file(path), path)


def read_router_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read router config: {exc.strerror}") from exc


def parse_router_config(text: bytes, path: Path) -> RouterConfig:
    """``text`` read from ``path`` (named in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    try:
        config = RouterConfig.model_validate(data or {})
    except Exception as exc:  # pydantic.ValidationError: shown as one line per problem
        raise InputError(f"{path}: invalid router config: {exc}") from exc
    if config.tls is not None:
        config.tls = config.tls.beside(path)
    return config
