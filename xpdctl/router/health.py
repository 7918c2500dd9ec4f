"""Backend health: active /health checks with thresholds, passive marking from request outcomes.

A new backend is admitted by its first successful check; after that, ``unhealthy_threshold``
consecutive failures (checks or requests) take it out and ``healthy_threshold`` consecutive
successful checks bring it back.

Slow is not down when nothing else could serve: timeouts alone never take out the last usable backend
of a pool. Taking it out turns every request into a 503, while keeping it lets them finish late; an
engine answers slowly when its host's CPU is busy (a neighbour compiling, a surge instance starting
during an upgrade). A backend that refuses connections or answers with errors is taken out regardless.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from xpdctl.router.backends import Backend, Registry
from xpdctl.router.config import Health

log = logging.getLogger(__name__)


def _last_usable(registry: Registry, backend: Backend) -> bool:
    pool = registry.prefills if backend.pool == "prefill" else registry.decodes
    return not any(other.usable for other in pool if other is not backend)


def record_failure(registry: Registry, backend: Backend, policy: Health, why: str, *, slow: bool = False) -> None:
    """``slow``: the failure was a timeout (the backend may still work, late)."""
    backend.successes = 0
    backend.fails += 1
    if backend.health == "unhealthy" or backend.fails < policy.unhealthy_threshold:
        return
    if slow and backend.usable and _last_usable(registry, backend):
        if backend.fails == policy.unhealthy_threshold:  # once per slow spell
            log.warning("backend %s timed out %d times (last: %s) but is the last usable %s backend: kept in rotation",
                        backend.url, backend.fails, why, backend.pool)
        return
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


async def check(registry: Registry, backend: Backend, policy: Health) -> None:
    slow = False
    try:
        async with backend.session.get(backend.url + "/health", timeout=aiohttp.ClientTimeout(total=policy.timeout_s)) as resp:
            await resp.read()
            ok, why = resp.status == 200, f"/health answered {resp.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        ok, why = False, f"/health failed: {type(exc).__name__}: {exc}"
        slow = isinstance(exc, asyncio.TimeoutError)
    if backend.removed:
        return
    if ok:
        record_check_success(backend, policy)
    else:
        record_failure(registry, backend, policy, why, slow=slow)


async def check_all(registry: Registry, policy: Health) -> None:
    await asyncio.gather(*(check(registry, b, policy) for b in registry))


async def health_loop(registry: Registry, policy: Health) -> None:
    while True:
        await check_all(registry, policy)
        await asyncio.sleep(policy.interval_s)
