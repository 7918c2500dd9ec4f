"""Request migration, the loop: a decode leg that broke is continued on another pair, within the
configured bounds (``migration.max_attempts`` continuations, ``migration.window_s`` from the first
failure until a continuation answers). What may be migrated, and how a continuation is shaped, is
xpdctl.router.migration; the legs themselves are the proxy's (``open_leg``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from xpdctl.router import migration
from xpdctl.router.backends import Backend
from xpdctl.router.config import Migration
from xpdctl.router.metrics import RouterMetrics

log = logging.getLogger(__name__)

# What ends a decode leg that migration answers, besides an error event in the stream (the ledger's
# ``error``): the connection broke or went idle.
LEG_BROKE = (aiohttp.ClientError, asyncio.TimeoutError)


class NoLeg(Exception):
    """No continuation leg could be opened; ``url`` is the decode that failed, when one was tried."""

    def __init__(self, message: str, url: str = "", no_backend: bool = False):
        super().__init__(message)
        self.url = url
        self.no_backend = no_backend


class GaveUp(Exception):
    """The request ends as it would without migration: ``reason`` is in the metrics and the log."""

    def __init__(self, reason: str, status: int, message: str):
        super().__init__(message)
        self.reason = reason
        self.status = status  # of the first failure, as the client would have got it without migration
        self.message = message


# (body, chat, decodes to avoid) -> the decode and its answer (status 200), the leg counted in flight
OpenLeg = Callable[[dict[str, Any], bool, set[str]], Awaitable[tuple[Backend, aiohttp.ClientResponse]]]
# (decode, exception) -> (HTTP status, message); records the failure against the decode (health, metrics)
Broke = Callable[[Backend, BaseException], tuple[int, str]]


class Migrator:
    def __init__(self, config: Migration, metrics: RouterMetrics, open_leg: OpenLeg, broke: Broke):
        self.config = config
        self.metrics = metrics
        self.open_leg = open_leg
        self.broke = broke
        self.status = 0  # of the request's first failure

    def _broke(self, decode: Backend, exc: BaseException) -> str:
        status, message = self.broke(decode, exc)
        self.status = self.status or status
        return message

    async def _next_leg(self, body: dict, chat: bool, tried: set[str], attempts: int, deadline: float,
                        why_not: str | None, failure: str, kind: str) -> tuple[Backend, aiohttp.ClientResponse]:
        """Another leg for a request whose leg failed with ``failure``, or GaveUp."""
        if why_not is None and attempts >= self.config.max_attempts:
            why_not = "attempts"
        if why_not is None:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    leg = await self.open_leg(body, chat, tried)
                self.metrics.migrations.labels(kind).inc()
                return leg
            except TimeoutError:
                why_not = "window"
            except NoLeg as exc:
                tried.add(exc.url)
                why_not = "no_backend" if exc.no_backend else None
                failure = f"{failure}; then {exc}"
        if why_not is None:
            raise _Again(failure)
        self.metrics.not_migrated.labels(why_not).inc()
        log.warning("request not migrated (%s): %s", why_not, failure)
        raise GaveUp(why_not, self.status or 502, f"{failure} (not migrated: {why_not})")

    async def stream(self, ledger: migration.StreamLedger, body: dict, chat: bool, decode: Backend,
                     upstream: aiohttp.ClientResponse | None, first: bytes, failure: tuple[int, str],
                     write: Callable[[bytes], Awaitable[None]]) -> Backend:
        """``upstream`` (None: it failed with ``failure`` before any byte) to the client through
        ``ledger``, continued elsewhere as often as the bounds allow; GaveUp when they do not. Returns
        the decode that finished the stream. The first leg is the caller's; continuations are this loop's."""
        self.status, message = failure
        tried = {decode.url}
        attempts = 0
        deadline = 0.0
        broke_at: float | None = None
        own: Backend | None = None  # the decode of a continuation leg, counted in flight while it streams
        try:
            while True:
                if upstream is not None:
                    message = await self._relay(ledger, decode, upstream, first, write, broke_at)
                    if message is None:
                        return decode
                    if own is not None:
                        upstream.close()
                        own.in_flight -= 1
                        own = None
                broke_at = time.monotonic()
                deadline = deadline or broke_at + self.config.window_s
                while True:
                    if ledger.forwarded:
                        leg_body, leg_chat, kind = migration.continuation(body, chat, ledger.prompt_ids or [], ledger.ids), False, "stream"
                    else:  # nothing reached the client: the request starts over
                        leg_body, leg_chat, kind = body, chat, "restart"
                    try:
                        decode, upstream = await self._next_leg(leg_body, leg_chat, tried, attempts, deadline,
                                                                ledger.continuation_refusal(), message, kind)
                        break
                    except _Again as again:
                        message = str(again)
                    finally:
                        attempts += 1
                tried.add(decode.url)
                own = decode
                own.in_flight += 1
                ledger.new_leg()
                first = b""
        finally:
            if own is not None:
                upstream.close()
                own.in_flight -= 1

    async def _relay(self, ledger: migration.StreamLedger, decode: Backend, upstream: aiohttp.ClientResponse, chunk: bytes,
                     write: Callable[[bytes], Awaitable[None]], broke_at: float | None) -> str | None:
        """One leg to the client: None when the stream ended well, else why the leg broke. A client that
        went away raises out of ``write``: that ends the request, it is no reason to migrate."""
        while True:
            data = ledger.feed(chunk) if chunk else b""
            if data:
                if broke_at is not None:
                    self.metrics.migration_gap.observe(time.monotonic() - broke_at)
                    broke_at = None
                await write(data)
            if ledger.error is not None:
                return self._broke(decode, ledger.error)
            if ledger.done:
                return None
            try:
                chunk = await upstream.content.readany()
                if not chunk:
                    raise aiohttp.ServerDisconnectedError("the stream ended without data: [DONE]")
            except LEG_BROKE as exc:
                message = self._broke(decode, exc)
                if ledger.finished:  # only the usage event and [DONE] were missing
                    await write(b"data: [DONE]\n\n")
                    return None
                return message

    async def whole(self, body: dict, chat: bool, decode: Backend, failure: tuple[int, str]) -> tuple[Backend, aiohttp.ClientResponse, bytes]:
        """A whole (not streamed) answer that broke: the request again on another pair; GaveUp when the
        bounds do not allow it. Nothing reached the client, so it starts over."""
        self.status, failure = failure
        tried = {decode.url}
        deadline = time.monotonic() + self.config.window_s
        for attempts in range(self.config.max_attempts + 1):
            try:
                decode, upstream = await self._next_leg(body, chat, tried, attempts, deadline, None, failure, "whole")
            except _Again as again:
                failure = str(again)
                continue
            tried.add(decode.url)
            decode.in_flight += 1
            try:
                return decode, upstream, await upstream.read()
            except LEG_BROKE as exc:
                failure = self._broke(decode, exc)
            finally:
                decode.in_flight -= 1
                upstream.close()
        raise AssertionError("unreachable: _next_leg gives up after max_attempts")


class _Again(Exception):
    """That continuation leg could not be opened; the next attempt may."""
