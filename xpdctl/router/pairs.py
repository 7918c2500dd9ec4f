"""Pairs the KV agents report broken: ``GET <agent>/pairs`` -> ``{"pairs": [{"prefill_url",
"decode_url", "ok", "reason"}, ...]}``. A pair with ``ok: false`` gets no traffic."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from xpdctl.router.backends import Registry, normalize_url

log = logging.getLogger(__name__)


def broken_pairs(report: dict) -> set[tuple[str, str]]:
    return {
        (normalize_url(p["prefill_url"]), normalize_url(p["decode_url"]))
        for p in report.get("pairs", [])
        if not p.get("ok", True)
    }


async def poll(session: aiohttp.ClientSession, agent: str, timeout_s: float) -> set[tuple[str, str]] | None:
    try:
        async with session.get(normalize_url(agent) + "/pairs", timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            resp.raise_for_status()
            return broken_pairs(await resp.json())
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
        log.warning("KV agent %s: cannot read /pairs (%r); keeping its last report", agent, exc)
        return None


async def pairs_loop(registry: Registry, agents: list[str], interval_s: float) -> None:
    """Merge every agent's report; an agent that cannot be read keeps its previous report."""
    last: dict[str, set[tuple[str, str]]] = {}
    async with aiohttp.ClientSession() as session:
        while True:
            reports = await asyncio.gather(*(poll(session, a, max(interval_s, 1.0)) for a in agents))
            for agent, report in zip(agents, reports):
                if report is not None:
                    last[agent] = report
            registry.broken_pairs = set().union(*last.values()) if last else set()
            await asyncio.sleep(interval_s)
