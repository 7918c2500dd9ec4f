"""The PD proxy: one client request -> a prefill leg -> a decode leg whose answer is passed through.

Failure semantics: a prefill failure is retried on another prefill (``prefill_retries`` times). A
decode leg that could not even connect (refused, unresolvable, connect timeout) never reached its
engine, so the prefill's KV is still waiting to be pulled: it is retried on another decode that pairs
with the prefill, or on the same one once more (``decode_connect_retries`` times). Any other decode
failure before its first byte becomes an OpenAI-style JSON error (503 unreachable, 504 timed out, 502
anything else); a decode failure after bytes were sent ends the stream with an SSE error event. A
decode that answered anything is never retried: it may have pulled the KV and started. A client that
goes away cancels this handler (aiohttp's handler cancellation), which closes the upstream
connections and so aborts the legs in vLLM.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import uuid

import aiohttp
import orjson  # each request is parsed twice and encoded twice: the stdlib's json took ~10% of the router's CPU
from aiohttp import web
from yarl import URL

from xpdctl.router import disagg, health, migration, pdcontract, selection, usage
from xpdctl.router.admission import Admission, QueueFull, QueueTimeout
from xpdctl.router.auth import KeyGate, Refused
from xpdctl.router.backends import Backend, Registry
from xpdctl.router.config import RouterConfig
from xpdctl.router.limits import KeyState
from xpdctl.router.metrics import RouterMetrics
from xpdctl.router.migrator import GaveUp, Migrator, NoLeg
from xpdctl.router.openai_errors import error_response, sse_error
from xpdctl.router.prefix import PrefixRouter, Want
from xpdctl.router.tracing import NoTracing, tracing_for

log = logging.getLogger(__name__)
_JSON = "application/json"
# W3C trace context goes to both legs as the client sent it (tracing on, each leg sends its own span's).
# The client's Authorization never does: engines take the cluster's own key (docs/security.md).
_TRACE_HEADERS = ("traceparent", "tracestate")


class LegFailed(Exception):
    """A leg failed in a way that is the backend's fault; ``status`` is what the client would get."""

    def __init__(self, status: int, kind: str, message: str, unsent: bool = False):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.unsent = unsent  # the connection never opened: the backend did not see the request


# What aiohttp raises only while opening a connection (DNS, TCP connect, TLS; ConnectionTimeoutError
# is the sock_connect timeout); a read timeout is SocketTimeoutError and means the request was sent.
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class LegAnswered(Exception):
    """The backend refused the request itself (4xx): the client gets that answer unchanged."""

    def __init__(self, response: web.Response):
        self.response = response


def _classify(exc: BaseException, backend: Backend, what: str) -> LegFailed:
    unsent = isinstance(exc, _CONNECT_ERRORS)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors too
        return LegFailed(504, "timeout", f"{what} {backend.url} timed out ({type(exc).__name__})", unsent)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return LegFailed(503, "connect", f"{what} {backend.url} is unreachable: {exc.os_error or exc}", unsent)
    return LegFailed(502, "broken", f"{what} {backend.url} failed: {type(exc).__name__}: {exc}")


class Proxy:
    def __init__(self, config: RouterConfig, registry: Registry, admission: Admission, metrics: RouterMetrics, keys: KeyGate):
        self.registry = registry
        self.admission = admission
        self.keys = keys
        self.metrics = metrics
        self.tracing = NoTracing()
        self.prefix: PrefixRouter | None = None  # set by the app from config.prefix_routing
        self.configure(config)
        # Queue slots free up as streams end, which at serving rates is well within a second.
        self._retry_after = {"Retry-After": "1"}

    def configure(self, config: RouterConfig) -> None:
        """Settings for requests from now on (a config reload); legs under way keep the timeouts they started with."""
        self.config = config
        engine_key = os.environ.get(config.engine_api_key_env) if config.engine_api_key_env else None
        self._engine_auth = f"Bearer {engine_key}" if engine_key else None
        t = config.timeouts
        # sock_read bounds every wait for upstream bytes; it is first_byte_s until the first byte of
        # the answer, then idle_s (set on the connection) between chunks. Passed with every leg, so a
        # reloaded connect_s reaches the sessions of backends that were already there.
        self._leg_timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect_s, sock_read=t.first_byte_s)
        if config.tracing.otlp_endpoint != self.tracing.endpoint:
            self.tracing.shutdown()
            self.tracing = tracing_for(config.tracing.otlp_endpoint)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        started = time.monotonic()
        route = "chat" if chat else "completions"
        status = 499  # stays so when the client went away before an answer
        with self.tracing.request(request.headers, route) as span:
            try:
                response = await self._admit(request, chat, started)
                status = response.status
                return response
            finally:
                span.set_attribute("http.response.status_code", status)
                self.metrics.request(route, status)
                self.metrics.e2e.observe(time.monotonic() - started)

    async def _admit(self, request: web.Request, chat: bool, started: float) -> web.StreamResponse:
        try:
            key = self.keys.admit(request)
        except Refused as refused:
            return refused.response
        if key is None:
            return await self._validated(request, chat, started, None)
        response: web.StreamResponse | None = None
        try:
            response = await self._validated(request, chat, started, key)
            return response
        finally:
            key.finish(response.status if response is not None else 499, _answer_usage(response))

    async def _validated(self, request: web.Request, chat: bool, started: float, key: KeyState | None) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except ValueError:
            return error_response(400, "the request body is not valid JSON")
        why = pdcontract.problem(body, chat)
        if why:
            return error_response(400, why)
        if key is not None and usage.with_stream_usage(body):  # a keyed stream's tokens are counted from it
            raw = orjson.dumps(body)
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        headers = {"X-Request-Id": request_id, "Content-Type": _JSON}
        for name in _TRACE_HEADERS:
            if name in request.headers:
                headers[name] = request.headers[name]
        if self._engine_auth:
            headers["Authorization"] = self._engine_auth
        try:
            with self.tracing.span("router queue"):
                await self.admission.acquire()
        except QueueFull:
            self.metrics.rejected.labels("full").inc()
            return error_response(429, "the router's queue is full; retry later", self._retry_after)
        except QueueTimeout:
            self.metrics.rejected.labels("timeout").inc()
            return error_response(503, "the request waited too long in the router's queue; retry later", self._retry_after)
        try:
            response = await self._route(request, body, raw, chat, headers, started)
        finally:
            self.admission.release()
        if not response.prepared:  # errors and pass-through refusals carry the id too
            response.headers.setdefault("X-Request-Id", request_id)
        return response

    async def _route(self, request: web.Request, body: dict, raw: bytes, chat: bool, headers: dict, started: float) -> web.StreamResponse:
        stream = bool(body.get("stream"))
        ledger = None
        if self.config.migration.enabled:
            ledger = migration.StreamLedger(chat, keep_ids=bool(body.get("return_token_ids")))
            ledger.refusal = migration.refusal(body, chat)
            if stream and ledger.refusal is None:  # a stream is continued from the token ids it carried
                body["return_token_ids"] = True
                raw = orjson.dumps(body)
        reason = disagg.decide(self.config.conditional_disagg, body, chat, self.registry.prefills)
        if self.config.conditional_disagg.enabled:
            self.metrics.disagg.labels("decode_only" if reason else "disaggregated", reason or "long_prompt").inc()
        want = self.prefix.want(body, chat) if self.prefix is not None else None
        if reason:
            return await self._decode_whole(request, body, raw, chat, stream, headers, started, ledger, want)

        prefill_payload = orjson.dumps(pdcontract.prefill_request(body, chat))
        tried: set[str] = set()
        failure: LegFailed | None = None
        failure_url = ""
        same_again = False
        for attempt in range(1 + self.config.prefill_retries):
            prefill = selection.pick_prefill(self.registry, tried, want)
            if prefill is None and failure is not None and failure.unsent and not same_again:
                # The only prefill left could not be connected to (a connect that timed out under load,
                # a restart between health checks): it never saw the request, so once more may serve.
                same_again = True
                prefill = selection.pick_prefill(self.registry, tried - {failure_url}, want)
            if prefill is None:
                break
            if attempt:
                self.metrics.retries.labels("prefill").inc()
            tried.add(prefill.url)
            try:
                kv = await self._prefill_leg(prefill, prefill_payload, chat, headers,
                                             want.prefill_work if want is not None else 0, ledger)
            except LegAnswered as answered:
                return answered.response
            except LegFailed as exc:
                failure, failure_url = exc, prefill.url
                continue
            decode = selection.pick_decode(self.registry, prefill, want=want)
            if decode is None:
                # Its decodes went away during the prefill leg (drained, removed, unhealthy): nothing
                # has reached the client yet, so another prefill with live partners may still serve.
                failure = LegFailed(
                    503, "no_decode",
                    f"no healthy decode backend pairs with prefill {prefill.url} (generation {prefill.generation!r})",
                )  # fmt: skip
                continue
            payload = orjson.dumps(pdcontract.decode_request(body, kv))
            return await self._decode_leg(request, prefill, decode, payload, chat, stream, headers, started, body, ledger)
        if self.config.decode_only_on_prefill_failure:
            self.metrics.disagg.labels("decode_only", "prefill_failed").inc()
            return await self._decode_whole(request, body, raw, chat, stream, headers, started, ledger, want)
        if failure is not None:
            return error_response(failure.status, failure.message)
        return error_response(503, "no healthy prefill backend with a compatible decode; check `GET /admin/backends` and the engines' /health")

    async def _decode_whole(self, request: web.Request, body: dict, raw: bytes, chat: bool, stream: bool, headers: dict, started: float,
                            ledger: migration.StreamLedger | None, want: Want | None) -> web.StreamResponse:
        """The client's request, unchanged, to a decode that computes the prompt itself."""
        decode = selection.pick_decode(self.registry, None, want=want)
        if decode is None:
            return error_response(503, "no healthy decode backend; check `GET /admin/backends` and the engines' /health")
        return await self._decode_leg(request, None, decode, raw, chat, stream, headers, started, body, ledger)

    async def _prefill_leg(self, prefill: Backend, payload: bytes, chat: bool, headers: dict, work: int,
                           ledger: migration.StreamLedger | None = None) -> dict:
        url = prefill.chat_url if chat else prefill.completions_url
        t0 = time.monotonic()
        prefill.in_flight += 1
        prefill.queued_tokens += work
        try:
            with self.tracing.leg("prefill leg", headers) as leg_headers:
                async with prefill.session.post(url, data=payload, headers=leg_headers, timeout=self._leg_timeout) as resp:
                    data = await resp.read()
                    status = resp.status
                    content_type = resp.headers.get("Content-Type", _JSON)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._failed(prefill, _classify(exc, prefill, "prefill")) from exc
        finally:
            prefill.in_flight -= 1
            prefill.queued_tokens -= work
        self.metrics.prefill_latency.observe(time.monotonic() - t0)
        if status >= 500:
            raise self._failed(prefill, LegFailed(502, "status", f"prefill {prefill.url} answered HTTP {status}: {data[:300]!r}"))
        health.record_request_success(prefill)
        if status != 200:
            raise LegAnswered(web.Response(status=status, body=data, headers={"Content-Type": content_type}))
        try:
            answer = orjson.loads(data)
        except ValueError:
            answer = None
        kv = pdcontract.kv_transfer_params(answer)
        if ledger is not None:
            ledger.note_prefill_answer(answer)
        if kv is None:
            raise self._failed(prefill, LegFailed(
                502, "contract", f"prefill {prefill.url} returned no kv_transfer_params: is it a vLLM KV producer "
                                 "(--kv-transfer-config with kv_role kv_producer and NixlConnector)?"))
        return kv

    def _failed(self, backend: Backend, failure: LegFailed) -> LegFailed:
        self.metrics.upstream_errors.labels(backend.pool, failure.kind).inc()
        health.record_failure(self.registry, backend, self.config.health, failure.message, slow=failure.kind == "timeout")
        return failure

    async def _decode_leg(self, request: web.Request, prefill: Backend | None, decode: Backend, payload: bytes,
                          chat: bool, stream: bool, headers: dict, started: float, body: dict,
                          ledger: migration.StreamLedger | None) -> web.StreamResponse:
        """``payload`` on ``decode``; while a decode cannot be connected to, on another one that may take
        ``prefill``'s KV (any usable decode for a request without a prefill leg), else once more on the
        same one: a decode restarted or stopped between health checks must not fail the request."""
        unreachable: set[str] = set()
        same_again = False
        for attempt in range(1 + self.config.decode_connect_retries):
            if attempt:
                self.metrics.retries.labels("decode").inc()
            try:
                return await self._decode_attempt(request, decode, payload, chat, stream, headers, started, body, ledger)
            except LegFailed as exc:  # only a leg whose connection never opened is raised, not answered
                failure = exc
            unreachable.add(decode.url)
            other = selection.pick_decode(self.registry, prefill, exclude=unreachable)
            if other is not None:
                decode = other
            elif same_again:
                break
            else:
                same_again = True  # a connect that timed out under load may well succeed now
        return error_response(failure.status, failure.message)

    async def _decode_attempt(self, request: web.Request, decode: Backend, payload: bytes, chat: bool, stream: bool,
                              headers: dict, started: float, body: dict, ledger: migration.StreamLedger | None) -> web.StreamResponse:
        url: URL = decode.chat_url if chat else decode.completions_url
        decode.in_flight += 1
        upstream: aiohttp.ClientResponse | None = None
        first = b""
        try:
            with self.tracing.leg("decode leg", headers) as leg_headers:
                try:
                    with self.tracing.span("kv handoff"):  # until the decode's first byte: KV pull, first step
                        upstream = await decode.session.post(url, data=payload, headers=leg_headers, timeout=self._leg_timeout)
                        if stream and upstream.status == 200:
                            first = await upstream.content.readany()
                    if not stream or upstream.status != 200:
                        return await self._whole_answer(decode, upstream, headers, started)
                    if not first:
                        raise aiohttp.ServerDisconnectedError("the decode ended its answer before any byte")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    failure = self._failed(decode, _classify(exc, decode, "decode"))
                    if failure.unsent:
                        raise failure from exc
                    if ledger is not None and ledger.refusal is None:
                        return await self._migrated(request, ledger, body, chat, stream, decode, None, b"", failure, headers, started)
                    self._not_migrated(ledger, failure.message)
                    return error_response(failure.status, failure.message)
                if ledger is not None and ledger.refusal is None:
                    return await self._migrated(request, ledger, body, chat, stream, decode, upstream, first, None, headers, started)
                return await self._pass_stream(request, decode, upstream, first, headers, started, ledger)
        except BaseException:
            if upstream is not None:
                upstream.close()  # closing the connection is how vLLM learns the request is gone
            raise
        finally:
            decode.in_flight -= 1
            if upstream is not None:
                upstream.release()

    async def _whole_answer(self, decode: Backend, upstream: aiohttp.ClientResponse, headers: dict, started: float) -> web.Response:
        _idle(upstream, self.config.timeouts.idle_s)
        data = await upstream.read()
        if upstream.status >= 500:
            failure = self._failed(decode, LegFailed(502, "status", f"decode {decode.url} answered HTTP {upstream.status}: {data[:300]!r}"))
            return error_response(failure.status, failure.message)
        health.record_request_success(decode)
        self.metrics.ttft.observe(time.monotonic() - started)
        content_type = upstream.headers.get("Content-Type", _JSON)
        return web.Response(status=upstream.status, body=data,
                            headers={"Content-Type": content_type, "X-Request-Id": headers["X-Request-Id"]})

    async def _pass_stream(self, request: web.Request, decode: Backend, upstream: aiohttp.ClientResponse, first: bytes,
                           headers: dict, started: float, ledger: migration.StreamLedger | None) -> web.StreamResponse:
        _idle(upstream, self.config.timeouts.idle_s)
        out = _PassThrough(headers={
            "Content-Type": upstream.headers.get("Content-Type", "text/event-stream"),
            "Cache-Control": "no-cache",
            "X-Request-Id": headers["X-Request-Id"],
        })
        await out.prepare(request)
        await out.write(first)
        self.metrics.ttft.observe(time.monotonic() - started)
        before = b""
        last = first
        read = upstream.content.readany
        try:
            while chunk := await read():
                await out.write(chunk)
                before, last = last, chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            failure = self._failed(decode, _classify(exc, decode, "decode"))
            self._not_migrated(ledger, failure.message)
            # The status line is long gone: the error travels as one more SSE event, after closing
            # off any event the decode left half-written.
            await out.write((b"" if last.endswith(b"\n\n") else b"\n\n") + sse_error(failure.status, failure.message + " (mid-stream; not retried)"))
        else:
            health.record_request_success(decode)
            out.tail = before + last
        await out.write_eof()
        return out


    def _not_migrated(self, ledger: migration.StreamLedger | None, failure: str) -> None:
        if ledger is not None:  # None: migration is off
            self.metrics.not_migrated.labels(ledger.refusal).inc()
            log.warning("request not migrated (%s): %s", ledger.refusal, failure)

    async def _migrated(self, request: web.Request, ledger: migration.StreamLedger, body: dict, chat: bool, stream: bool,
                        decode: Backend, upstream: aiohttp.ClientResponse | None, first: bytes, failure: LegFailed | None,
                        headers: dict, started: float) -> web.StreamResponse:
        """The decode leg (``upstream``; None when it already failed with ``failure``) continued on other
        pairs when it breaks (xpdctl.router.migrator)."""
        migrator = Migrator(self.config.migration, self.metrics, functools.partial(self._open_leg, headers), self._broke)
        first_failure = (failure.status, failure.message) if failure else (0, "")
        if not stream:
            try:
                decode, answer, data = await migrator.whole(body, chat, decode, first_failure)
            except GaveUp as gave_up:
                return error_response(gave_up.status, gave_up.message)
            health.record_request_success(decode)
            self.metrics.ttft.observe(time.monotonic() - started)
            return web.Response(status=200, body=data, headers={"Content-Type": answer.headers.get("Content-Type", _JSON),
                                                                "X-Request-Id": headers["X-Request-Id"]})
        if upstream is not None:
            _idle(upstream, self.config.timeouts.idle_s)
        out = _PassThrough(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Request-Id": headers["X-Request-Id"]})

        async def write(data: bytes) -> None:
            if not out.prepared:
                await out.prepare(request)
                self.metrics.ttft.observe(time.monotonic() - started)
            await out.write(data)

        try:
            decode = await migrator.stream(ledger, body, chat, decode, upstream, first, first_failure, write)
        except GaveUp as gave_up:
            if not out.prepared:
                return error_response(gave_up.status, gave_up.message)
            await out.write(sse_error(gave_up.status, gave_up.message))
        else:
            health.record_request_success(decode)
            out.tail = ledger.tail
        await out.write_eof()
        return out

    def _broke(self, decode: Backend, exc: BaseException) -> tuple[int, str]:
        if isinstance(exc, migration.EngineError):
            failure = self._failed(decode, LegFailed(502, "broken", f"decode {decode.url} sent an error event: {exc}"))
        else:
            failure = self._failed(decode, _classify(exc, decode, "decode"))
        return failure.status, failure.message

    async def _open_leg(self, headers: dict, body: dict, chat: bool, avoid: set[str]) -> tuple[Backend, aiohttp.ClientResponse]:
        """``body`` on a pair whose decode is not in ``avoid``: its answer, status 200, idle timeout set."""
        prefill = None
        if not disagg.decide(self.config.conditional_disagg, body, chat, self.registry.prefills):
            prefill = selection.pick_prefill(self.registry, set())
        if prefill is not None and selection.pick_decode(self.registry, prefill, avoid) is None:
            prefill = None  # no decode left that pairs with it: one that computes the prompt itself
        payload = body
        if prefill is not None:
            try:
                # Routed by load alone (no prefix index for a continuation): it adds no queued tokens.
                payload = pdcontract.decode_request(body, await self._prefill_leg(
                    prefill, orjson.dumps(pdcontract.prefill_request(body, chat)), chat, headers, 0))
            except LegFailed as exc:
                raise NoLeg(exc.message) from exc
            except LegAnswered as exc:
                raise NoLeg(f"prefill {prefill.url} refused the continuation: HTTP {exc.response.status}") from exc
        decode = selection.pick_decode(self.registry, prefill, avoid)
        if decode is None:
            raise NoLeg("no usable decode backend left to continue on", no_backend=True)
        url = decode.chat_url if chat else decode.completions_url
        try:
            upstream = await decode.session.post(url, data=orjson.dumps(payload), headers=headers, timeout=self._leg_timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NoLeg(self._broke(decode, exc)[1], decode.url) from exc
        if upstream.status != 200:
            data = await upstream.read()
            upstream.close()
            failure = LegFailed(502, "status", f"decode {decode.url} answered HTTP {upstream.status}: {data[:300]!r}")
            raise NoLeg((self._failed(decode, failure) if upstream.status >= 500 else failure).message, decode.url)
        _idle(upstream, self.config.timeouts.idle_s)
        return decode, upstream


class _PassThrough(web.StreamResponse):
    # The status line and headers leave in one write with the first chunk, as in vllm-router: a
    # StreamResponse sends them alone at prepare(), which costs a syscall and wakes the client for
    # nothing on every request.
    _send_headers_immediately = False
    tail = b""  # the last two chunks of a stream that ended well: where its usage event is


def _answer_usage(response: web.StreamResponse | None) -> tuple[int, int] | None:
    if isinstance(response, _PassThrough):
        return usage.of_stream_tail(response.tail)
    if isinstance(response, web.Response) and response.status == 200 and isinstance(response.body, bytes):
        return usage.of_body(response.body)
    return None


def _idle(upstream: aiohttp.ClientResponse, idle_s: float) -> None:
    """From the first byte on, the read timeout is the idle gap between chunks."""
    connection = upstream.connection
    if connection is not None and connection.protocol is not None:
        connection.protocol.read_timeout = idle_s
        connection.protocol.start_timeout()  # the pending timer still counts first_byte_s otherwise
