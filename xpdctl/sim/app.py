"""The simulator's HTTP application: vLLM's endpoints plus /sim/* for tests (faults, request log, KV pulls)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from xpdctl.router.prompttokens import PromptTokens
from xpdctl.sim import kvlease, shapes, stamps, textgen
from xpdctl.sim.config import Faults, SimConfig
from xpdctl.sim.faults import FaultState
from xpdctl.sim.metrics import SimMetrics
from xpdctl.sim.prefixcache import PrefixCache, Publisher
from xpdctl.sim.timing import timing_for

ENGINE_KEY = web.AppKey("engine", "Engine")
_JSON = "application/json"


def _error(status: int, message: str) -> web.Response:
    return web.json_response(shapes.error(status, message), status=status)


class _Dropped(Exception):
    """The injected fault cut the connection: the client sees a dead peer, not an answer."""


class Engine:
    def __init__(self, config: SimConfig):
        self.config = config
        self.timing = timing_for(config)
        self.engine_id = str(uuid.uuid4())
        self.leases = kvlease.LeaseTable(self.engine_id, config.num_gpu_blocks, config.block_size, config.kv_lease_s)
        self.faults = FaultState(config.faults)
        self.running = 0
        self.waiting = 0
        self.running_blocks = 0
        self._slots = asyncio.Semaphore(config.max_num_seqs)
        # The last requests and what became of them: tests read it through /sim/requests.
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)
        self.metrics = SimMetrics(config.model, self._gauges)
        self.side_channel: tuple[str, int] = (config.advertised_side_channel_host(), config.side_channel_port)
        self.session: aiohttp.ClientSession | None = None
        self.jobs: set[_Job] = set()
        # Set by POST /sim/crash: every connection is cut, as when the process or its host dies.
        self.crashed = False
        self.tokens: PromptTokens | None = None
        self.publisher: Publisher | None = None
        self.prefix: PrefixCache | None = None
        if config.prefix_caching:
            self.tokens = PromptTokens(config.tokenizer or "")
            if config.kv_events_port is not None:
                self.publisher = Publisher(f"tcp://{config.host}:{config.kv_events_port or '*'}")
                self.publisher.mode = config.faults.kv_events
            self.prefix = PrefixCache(config.num_gpu_blocks, config.block_size, self.publisher)
        self._prefill_free_at = 0.0  # serial_prefill: when the prompt being computed is done

    def crash(self) -> int:
        """Cut every answer under way and every later connection; how many answers were cut."""
        self.crashed = True
        jobs = list(self.jobs)
        for job in jobs:
            job.cut()
        return len(jobs)

    def set_faults(self, faults: Faults) -> None:
        self.faults.replace(faults)
        if self.publisher is not None:
            self.publisher.mode = faults.kv_events

    def _prefill_s(self, tokens: int) -> float:
        duration = self.timing.prefill_s(tokens)
        if not self.config.serial_prefill:
            return duration
        now = time.monotonic()
        self._prefill_free_at = max(now, self._prefill_free_at) + duration
        return self._prefill_free_at - now

    def _gauges(self) -> dict[str, float]:
        return {
            "vllm:num_requests_running": self.running,
            "vllm:num_requests_waiting": self.waiting,
            "vllm:kv_cache_usage_perc": min(1.0, (self.leases.used_blocks + self.running_blocks) / self.config.num_gpu_blocks),
        }

    async def generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        started = time.monotonic()
        if self.crashed:
            self.log.append({"request_id": request.headers.get("X-Request-Id"), "path": request.path, "outcome": "cut"})
            _cut(request)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        record = {"request_id": request_id, "path": request.path, "body": body, "status": None, "outcome": "running", "tokens_sent": 0,
                  "traceparent": request.headers.get("traceparent")}  # W3C trace context, as vLLM reads it
        self.log.append(record)
        response = await self._generate(request, body, chat, request_id, record, started)
        record["status"] = response.status
        if record["outcome"] == "running":
            record["outcome"] = "finished" if response.status == 200 else "refused"
        return response

    async def _generate(self, request: web.Request, body: dict, chat: bool, request_id: str, record: dict, started: float) -> web.StreamResponse:
        cfg = self.config
        if body.get("model") != cfg.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        try:
            key, prompt_ids = textgen.parse_prompt(body, chat)
        except textgen.PromptError as exc:
            return _error(400, str(exc))
        prompt_tokens = len(prompt_ids)
        max_tokens = (body.get("max_completion_tokens") if chat else None) or body.get("max_tokens") or cfg.default_max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return _error(400, "max_tokens must be a positive integer")
        if prompt_tokens + max_tokens > cfg.max_model_len:
            return _error(400, f"This model's maximum context length is {cfg.max_model_len} tokens. However, you requested "
                               f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).")
        kv = body.get("kv_transfer_params") or {}
        produce, consume = bool(kv.get("do_remote_decode")), bool(kv.get("do_remote_prefill"))
        if produce and cfg.role == "decode":
            return _error(400, "this instance is a KV consumer (decode role): it cannot prefill for a remote decode")
        if consume and cfg.role == "prefill":
            return _error(400, "this instance is a KV producer (prefill role): it cannot take remote KV")

        faults = self.faults.take()
        if faults.first_byte_delay_ms:
            await asyncio.sleep(faults.first_byte_delay_ms / 1000.0)
        if faults.fail_status:
            record["outcome"] = "failed"
            self.metrics.finished["error"].inc()
            return _error(faults.fail_status, f"injected fault: status {faults.fail_status}")

        blocks = self.leases.blocks_for(prompt_tokens)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        self.running_blocks += blocks
        try:
            ids = self.tokens.of(body, chat) if self.tokens is not None else None
            computed = None  # token ids cached once the first token is out (prefix caching)
            if ids and self.prefix is not None:
                prompt_tokens = len(ids)
            if consume:
                pull_started = time.monotonic()
                try:
                    await kvlease.pull(self._session(), kv, textgen.digest(key), timeout_s=30.0)
                except kvlease.KvRefused as exc:
                    record["outcome"] = "refused"
                    return _error(exc.status, exc.reason)
                self.metrics.kv_xfer.observe(time.monotonic() - pull_started)
                first_s = self.timing.kv_pull_s(prompt_tokens)
                if ids and self.prefix is not None:
                    self.prefix.store(ids)  # a decode caches the blocks it pulled, as vLLM does
            elif ids and self.prefix is not None:
                cached = self.prefix.cached_tokens(ids)
                self.metrics.prefix_queries.inc(len(ids))
                self.metrics.prefix_hits.inc(cached)
                self.metrics.prompt_tokens.inc(prompt_tokens)
                first_s = self._prefill_s(prompt_tokens - cached)
                computed = ids
            else:
                self.metrics.prompt_tokens.inc(prompt_tokens)
                first_s = self._prefill_s(prompt_tokens)
            job = _Job(self, request, body, chat, request_id, record, started, key, prompt_ids, max_tokens, produce, faults, first_s)
            job.prompt_tokens = prompt_tokens  # the model tokenizer's count when prefix caching reads real tokens
            job.computed = computed
            self.jobs.add(job)
            try:
                return await (job.stream() if body.get("stream") else job.whole())
            finally:
                self.jobs.discard(job)
        except (asyncio.CancelledError, ConnectionResetError):
            record["outcome"] = "aborted"
            self.metrics.finished["abort"].inc()
            if self.crashed:  # its own cut, met by a write: no traceback in the log for it
                raise asyncio.CancelledError() from None
            raise
        except _Dropped:
            record["outcome"] = "dropped"
            self.metrics.finished["abort"].inc()
            # The connection is gone: end the handler as aiohttp ends one whose client left.
            raise asyncio.CancelledError() from None
        finally:
            self.running -= 1
            self.running_blocks -= blocks
            self._slots.release()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self.session


class _Job:
    """One admitted generate request: produces its tokens on the timing model's schedule."""

    def __init__(self, engine: Engine, request: web.Request, body: dict, chat: bool, request_id: str, record: dict,
                 started: float, key: str, prompt_ids: list[int], max_tokens: int, produce: bool, faults: Faults, first_s: float):
        self.e, self.request, self.body, self.chat, self.record = engine, request, body, chat, record
        self.started, self.key, self.produce, self.faults = started, key, produce, faults
        self.prompt_ids, self.prompt_tokens = prompt_ids, len(prompt_ids)
        # vLLM's return_token_ids: prompt ids once, generated ids with each token (see docs/router.md).
        self.with_ids = bool(body.get("return_token_ids"))
        self.request_id = request_id
        self.rid = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())
        self.token_ids = textgen.generate(prompt_ids, max_tokens)
        self.tokens = [textgen.text_of(t) for t in self.token_ids]
        self.times = engine.timing.token_times(first_s, max_tokens)
        self.computed: list[int] | None = None

    def _first_token(self) -> None:
        if self.computed is not None and self.e.prefix is not None:
            self.e.prefix.store(self.computed)

    async def _until(self, index: int) -> None:
        delay = self.started + self.times[index] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if index == 0:
            self.e.metrics.ttft.observe(time.monotonic() - self.started)
        else:
            self.e.metrics.itl.observe(self.times[index] - self.times[index - 1])
        self.e.metrics.generation_tokens.inc()

    def cut(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _maybe_drop(self, sent: int) -> None:
        if self.e.crashed or (self.faults.fail_after_tokens is not None and sent >= self.faults.fail_after_tokens):
            self.cut()
            raise _Dropped()

    def _kv_params(self) -> dict | None:
        if not self.produce:
            return None
        blocks = self.e.leases.grant(self.request_id, self.prompt_tokens, textgen.digest(self.key))
        host, port = self.e.side_channel
        return kvlease.producer_params(self.e.leases, self.request_id, blocks, host, port, self.prompt_tokens)

    def _finish(self) -> None:
        self.e.metrics.finished["length"].inc()
        self.e.metrics.e2e.observe(time.monotonic() - self.started)

    def _usage(self) -> dict:
        return shapes.usage(self.prompt_tokens, len(self.tokens))

    def _answer_stamps(self, first_token: float, last_token: float) -> dict:
        return stamps.answer(self.started, first_token, last_token, self.body.get("kv_transfer_params"))

    async def whole(self) -> web.Response:
        kv = None
        first = 0.0
        for i in range(len(self.tokens)):
            self._maybe_drop(i)
            await self._until(i)
            if i == 0:
                first = time.monotonic()
                kv = self._kv_params()
                self._first_token()
        build = shapes.chat_completion if self.chat else shapes.completion
        data = build(self.rid, self.created, self.e.config.model, "".join(self.tokens), "length", self._usage(), kv)
        if self.with_ids:
            (data if self.chat else data["choices"][0])["prompt_token_ids"] = self.prompt_ids
            data["choices"][0]["token_ids"] = self.token_ids
        if self.e.config.timestamps:
            if kv is not None:
                kv[stamps.KEY] = stamps.prefill(self.started, time.monotonic())
            else:
                data[stamps.KEY] = self._answer_stamps(first, time.monotonic())
        self.record["tokens_sent"] = len(self.tokens)
        self._finish()
        return web.Response(body=json.dumps(data).encode(), content_type=_JSON, headers={"X-Request-Id": self.request_id})

    def _template(self, chunk: dict) -> list[bytes]:
        if self.with_ids:
            chunk["choices"][0]["token_ids"] = [shapes.TOKEN_ID_MARK]
        return shapes.sse_template(chunk)

    def _first_completion_chunk(self, only: bool) -> dict:
        chunk = shapes.completion_chunk(self.rid, self.created, self.e.config.model, shapes.TOKEN_MARK, "length" if only else None)
        chunk["choices"][0]["prompt_token_ids"] = self.prompt_ids
        return chunk

    async def stream(self) -> web.StreamResponse:
        model = self.e.config.model
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Request-Id": self.request_id})
        await resp.prepare(self.request)
        last = len(self.tokens) - 1
        mark = shapes.TOKEN_MARK
        if self.chat:
            ongoing = self._template(shapes.chat_chunk(self.rid, self.created, model, {"content": mark}, None))
            final = self._template(shapes.chat_chunk(self.rid, self.created, model, {"content": mark}, "length"))
            role = shapes.chat_chunk(self.rid, self.created, model, {"role": "assistant", "content": ""}, None)
            if self.with_ids:
                role["prompt_token_ids"] = self.prompt_ids
            opening = shapes.sse(role)
            first_event = None
        else:
            ongoing = self._template(shapes.completion_chunk(self.rid, self.created, model, mark, None))
            final = self._template(shapes.completion_chunk(self.rid, self.created, model, mark, "length"))
            opening = b""
            first_event = self._template(self._first_completion_chunk(last == 0)) if self.with_ids else None
        first = sent = 0.0
        for i, token in enumerate(self.tokens):
            self._maybe_drop(i)
            if self.faults.stall_after_tokens == i and self.faults.stall_ms:
                await asyncio.sleep(self.faults.stall_ms / 1000.0)
            await self._until(i)
            sent = time.monotonic()
            if i == 0:
                first = sent
                self._kv_params()
                self._first_token()
            parts = first_event if i == 0 and first_event else final if i == last else ongoing
            event = parts[0] + json.dumps(token).encode() + parts[1]
            if self.with_ids:
                event += str(self.token_ids[i]).encode() + parts[2]
            await resp.write((opening if i == 0 else b"") + event)
            self.record["tokens_sent"] = i + 1
        options = self.body.get("stream_options") or {}
        tail = b""
        if options.get("include_usage"):
            chunk = shapes.usage_chunk(self.rid, self.created, model, self.chat, self._usage())
            if self.e.config.timestamps:
                chunk[stamps.KEY] = self._answer_stamps(first, sent)
            tail = shapes.sse(chunk)
        await resp.write(tail + shapes.SSE_DONE)
        self._finish()
        await resp.write_eof()
        return resp


async def _completions(request: web.Request) -> web.StreamResponse:
    return await request.app[ENGINE_KEY].generate(request, chat=False)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await request.app[ENGINE_KEY].generate(request, chat=True)


async def _models(request: web.Request) -> web.Response:
    cfg = request.app[ENGINE_KEY].config
    card = {"id": cfg.model, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": cfg.model,
            "parent": None, "max_model_len": cfg.max_model_len, "permission": []}
    return web.json_response({"object": "list", "data": [card]})


def _cut(request: web.Request) -> None:
    """A crashed engine's connection: closed without an answer."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError()


async def _health(request: web.Request) -> web.Response:
    if request.app[ENGINE_KEY].crashed:
        _cut(request)
    faults = request.app[ENGINE_KEY].faults.current
    if faults.health_delay_ms:
        await asyncio.sleep(faults.health_delay_ms / 1000)
    return web.Response(status=faults.health_status)


async def _metrics(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    engine.leases.expire()
    return web.Response(body=generate_latest(engine.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE_KEY].faults.current.model_dump())


async def _set_faults(request: web.Request) -> web.Response:
    try:
        faults = Faults.model_validate(await request.json())
    except (ValueError, ValidationError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    request.app[ENGINE_KEY].set_faults(faults)
    return web.json_response(faults.model_dump())


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[ENGINE_KEY].set_faults(Faults())
    return web.json_response(Faults().model_dump())


async def _crash(request: web.Request) -> web.Response:
    return web.json_response({"cut": request.app[ENGINE_KEY].crash()})


async def _requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": list(request.app[ENGINE_KEY].log)})


async def _state(request: web.Request) -> web.Response:
    e = request.app[ENGINE_KEY]
    return web.json_response({"role": e.config.role, "engine_id": e.engine_id, "running": e.running, "waiting": e.waiting,
                              "kv_leases": e.leases.outstanding(), "kv_leases_expired": e.leases.expired})


async def _kv_pull(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    try:
        claim = await request.json()
        engine.leases.claim(claim["engine_id"], claim["request_id"], list(claim["block_ids"]), claim["prompt_digest"])
    except kvlease.KvRefused as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": f"malformed KV pull: {exc!r}"}, status=400)
    return web.json_response({"ok": True})


async def _close_session(app: web.Application) -> None:
    if app[ENGINE_KEY].session is not None:
        await app[ENGINE_KEY].session.close()
    if app[ENGINE_KEY].publisher is not None:
        app[ENGINE_KEY].publisher.close()


def _api_key_guard(key: str):
    """vLLM's --api-key / VLLM_API_KEY check: a bearer token on paths under /v1 only (vLLM's
    AuthenticationMiddleware, GUARDED_PREFIX); /health, /metrics and the rest stay open."""
    expected = f"Bearer {key}"

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.path.startswith("/v1") and request.headers.get("Authorization") != expected:
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    return guard


def build_app(config: SimConfig) -> web.Application:
    key = os.environ.get("VLLM_API_KEY")
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_api_key_guard(key)] if key else [])
    app[ENGINE_KEY] = Engine(config)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/sim/faults", _get_faults)
    app.router.add_post("/sim/faults", _set_faults)
    app.router.add_delete("/sim/faults", _clear_faults)
    app.router.add_get("/sim/requests", _requests)
    app.router.add_post("/sim/crash", _crash)
    app.router.add_get("/sim/state", _state)
    app.router.add_post(kvlease.PULL_PATH, _kv_pull)
    app.on_cleanup.append(_close_session)
    return app
