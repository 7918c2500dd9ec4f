"""Backend health: active /health checks with thresholds, passive marking from request outcomes.

A new backend is admitted by its first successful check; after that, ``unhealthy_threshold``
consecutive failures (checks or requests) take it out and ``healthy_threshold`` consecutive
successful checks bring it back.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from xpdctl.router.backends import Backend, Registry
from xpdctl.router.config import Health

log = logging.getLogger(__name__)


def record_failure(backend: Backend, policy: Health, why: str) -> None:
    backend.successes = 0
    backend.fails += 1
    if backend.health != "unhealthy" and backend.fails >= policy.unhealthy_threshold:
        backend.health = "unhealthy"
        log.warning("backend %s is unhealthy after %d failures (last: %s)", backend.url, backend.fails, why)


def record_check_success(backend: Backend, policy: Health) -> None:
    backend.fails = 0
    backend.successes += 1
    if backend.health == "unknown" or (backend.health == "unhealthy" and backend.successes >= policy.healthy_threshold):
        if backend.health == "unhealthy":
            log.warning("backend %s is healthy again", backend.url)
        backend.health = "healthy"


def record_request_success(backend: Backend) -> None:
    # A served request proves the backend works but does not re-admit it: only checks do.
    backend.fails = 0


async def check(backend: Backend, policy: Health) -> None:
    try:
        async with backend.session.get(backend.url + "/health", timeout=aiohttp.ClientTimeout(total=policy.timeout_s)) as resp:
            await resp.read()
            ok, why = resp.status == 200, f"/health answered {resp.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        ok, why = False, f"/health failed: {type(exc).__name__}: {exc}"
    if backend.removed:
        return
    if ok:
        record_check_success(backend, policy)
    else:
        record_failure(backend, policy, why)


async def check_all(registry: Registry, policy: Health) -> None:
    await asyncio.gather(*(check(b, policy) for b in registry))


async def health_loop(registry: Registry, policy: Health) -> None:
    while True:
        await check_all(registry, policy)
        await asyncio.sleep(policy.interval_s)
