"""Reloading the router's config file (SIGHUP): the running router takes every field of the new file
without dropping a request, or, when the file cannot be read or is invalid, keeps the old config whole.

Backends are reconciled by URL: a kept backend keeps its runtime state (drain flag, health, counters);
a new one, or a kept URL whose pool, generation, name, KV event endpoint or block size changed, gets a fresh record that is admitted
by its first successful health check; one no longer listed is retired (its in-flight requests finish,
then its connections close). A new listen address is bound before anything else changes and the old
one is closed last, so streams on old connections finish.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xpdctl.aioserve import add_site, bound_port
from xpdctl.errors import InputError, XpdError
from xpdctl.router import health, tls
from xpdctl.router.backends import Backend, Registry, normalize_url
from xpdctl.router.config import Backend as BackendSpec
from xpdctl.router.config import Health, RouterConfig, parse_router_config, read_router_file

if TYPE_CHECKING:
    from xpdctl.router.server import RunningRouter

log = logging.getLogger(__name__)

# Fields whose change is reported by name; backends and the admin token are reported apart.
_SETTINGS = [name for name in RouterConfig.model_fields if name not in ("backends", "admin")]


@dataclass
class LoadedFile:
    config: RouterConfig
    admin_token: str | None
    sha256: str


def read(path: Path, port: int | None) -> LoadedFile:
    """The file as the router would run it: ``port`` (the command line's --port) overrides its own."""
    text = read_router_file(path)
    config = parse_router_config(text, path)
    if port is not None:
        config.listen.port = port
    try:
        token = config.admin.resolved_token()
    except OSError as exc:
        raise InputError(f"{path}: admin.token_file {config.admin.token_file}: cannot read: {exc.strerror}") from exc
    return LoadedFile(config, token, hashlib.sha256(text).hexdigest())


async def reload_file(running: RunningRouter, path: Path) -> bool:
    """Read ``path`` and run it; False (old config kept, one error line logged) when it cannot be."""
    metrics = running.router.metrics
    async with running.reload_lock:  # a second SIGHUP waits for the first reload to finish
        try:
            loaded = read(path, running.port_override)
            changes = await _apply(running, loaded)
        except XpdError as exc:
            metrics.config_reloads.labels("error").inc()
            log.error("reload of %s failed, still running the previous config: %s", path, exc)
            return False
    metrics.config_reloads.labels("ok").inc()
    metrics.config_file.info({"path": str(path), "sha256": loaded.sha256})
    log.info("reloaded %s: %s", path, ", ".join(changes) or "no changes")
    return True


async def _apply(running: RunningRouter, loaded: LoadedFile) -> list[str]:
    old, new = running.router.config.listen, loaded.config.listen
    tls.reload_context(running.tls, loaded.config.tls)
    site = None
    if (old.host, old.port) != (new.host, new.port):
        try:
            site = await add_site(running.runner, new.host, new.port, running.tls)
        except OSError as exc:
            raise XpdError(f"cannot listen on {new.host}:{new.port}: {exc.strerror or exc}; "
                           "free the address or choose another listen.port") from exc
    changes = await running.router.apply(loaded.config, loaded.admin_token)
    if site is not None:
        for previous in [s for s in running.runner.sites if s is not site]:
            await previous.stop()  # stops listening; connections already open are served to the end
        running.port = bound_port(site)
        changes = [f"listen {new.host}:{running.port}" if c == "listen" else c for c in changes]
    return changes


async def reconcile_backends(registry: Registry, specs: list[BackendSpec], policy: Health) -> list[str]:
    """Make ``registry`` hold exactly ``specs``; returns the counts in words ("+1 backend", ...)."""
    wanted = {normalize_url(s.url): s for s in specs}
    fresh = []
    replaced = 0
    for url, spec in wanted.items():
        have = registry.get(url)
        if have is None or _identity(have) != (spec.pool, spec.generation, spec.name, spec.kv_events, spec.block_size):
            fresh.append(Backend(spec, registry.timeouts))
            replaced += have is not None
    try:
        await _first_checks(registry, fresh, policy)
    except BaseException:
        await asyncio.gather(*(b.session.close() for b in fresh))
        raise
    gone = [b.url for b in registry if b.url not in wanted]
    for url in gone:
        registry.retire(url)
    for backend in fresh:
        if registry.get(backend.url) is not None:  # replaced (or added by the admin API meanwhile)
            registry.retire(backend.url)
        registry.insert(backend)
    added = len(fresh) - replaced
    counts = [f"+{added} {_backends(added)}", f"-{len(gone)} {_backends(len(gone))}", f"{replaced} {_backends(replaced)} replaced"]
    return [words for n, words in zip((added, len(gone), replaced), counts) if n]


def _identity(backend: Backend) -> tuple:
    # A new event endpoint or block size is another engine as far as its prefix index goes.
    return backend.pool, backend.generation, backend.name, backend.kv_events, backend.block_size


async def _first_checks(registry: Registry, fresh: list[Backend], policy: Health) -> None:
    """Check new backends before anything is removed, so a reload that swaps one engine for another
    leaves no moment without a usable backend. A check that fails is tried again, ``interval_s`` apart,
    up to ``unhealthy_threshold`` times in all (one missed check under load emptied the decode pool in
    benchmarks/router_reload_bench.py); a backend still not healthy is added all the same and admitted
    by a later check, as with the admin API's add."""
    pending = fresh
    for attempt in range(policy.unhealthy_threshold):
        if attempt:
            await asyncio.sleep(policy.interval_s)
        await asyncio.gather(*(health.check(registry, b, policy) for b in pending))
        pending = [b for b in pending if b.health != "healthy"]
        if not pending:
            return
    for backend in pending:
        log.warning("reload: new backend %s failed its first %d health checks; added, and admitted once a check passes",
                    backend.url, policy.unhealthy_threshold)


def _backends(n: int) -> str:
    return "backend" if n == 1 else "backends"


def changed_settings(old: RouterConfig, new: RouterConfig, token_changed: bool) -> list[str]:
    """Names of the settings (top-level fields) that differ, for the reload's log line."""
    changed = [name for name in _SETTINGS if getattr(old, name) != getattr(new, name)]
    if token_changed:
        changed.append("admin token")
    elif old.admin != new.admin:
        changed.append("admin")
    return changed
