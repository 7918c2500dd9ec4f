"""Waiting on remote services over HTTP without giving up on the whole cluster for one of them.

Unlike the local form's waits, these never raise: a service that is still not healthy at the timeout
is reported with its last answer, and ``deploy`` carries on with the services that are.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Collection, Sequence

from xpdctl.verify.health import Progress, probe
from xpdctl.verify.kvpath import PairReport, agent_pairs


def wait_healthy(
    urls: dict[str, str], *, timeout_s: float, what: str, progress: Progress, poll_s: float = 1.0,
    context: ssl.SSLContext | None = None,
) -> dict[str, str]:
    """``{name: "healthy" | last reason}`` once every service answers ``/health`` or the time is up."""
    start = time.monotonic()
    last: dict[str, str] = {}
    while True:
        elapsed = time.monotonic() - start
        for name, url in urls.items():
            if last.get(name) != "healthy":
                last[name] = probe(url, context=context)
        waiting = [f"{name} {last[name]}" for name in urls if last[name] != "healthy"]
        if not waiting:
            progress.done(f"{what}: {len(urls)} healthy in {elapsed:.0f} s")
            return last
        if elapsed > timeout_s:
            progress.done(f"{what}: not healthy after {elapsed:.0f} s: {', '.join(waiting)}")
            return last
        progress.show(f"{what}: waiting for {', '.join(waiting)} ({elapsed:.0f} s)")
        time.sleep(poll_s)


def wait_pairs(
    agent_urls: Sequence[str],
    engines: Collection[str],
    *,
    timeout_s: float,
    progress: Progress,
    poll_s: float = 2.0,
    broken_for_s: float = 30.0,
) -> tuple[list[PairReport], dict[str, str]]:
    """The agents' verdicts on every pair between ``engines`` (service names), and why the agents that
    could not be read (by URL) could not; returns once all are ok, the others have stayed broken ``broken_for_s``, or the
    time is up.

    Pairs with an engine outside ``engines`` (on a host that failed) are left out: they cannot work
    yet, and the pairs that can should not wait for them. A pair's first verdicts while the agents of
    freshly started hosts learn of each other may say broken; only one that stays so is.
    """
    start = time.monotonic()
    broken_since: dict[tuple[str, str], float] = {}
    while True:
        now = time.monotonic()
        elapsed = now - start
        reports: dict[tuple[str, str], PairReport] = {}
        unread: dict[str, str] = {}
        for url in agent_urls:
            got = agent_pairs(url)
            if isinstance(got, str):
                unread[url] = got
                continue
            for pair in got:
                key = (pair.prefill, pair.decode)
                # Both ends' agents list a pair: the decode side measures it, the prefill side relays
                # that a little later, so an ok from either is the newer verdict.
                if pair.prefill in engines and pair.decode in engines and (key not in reports or pair.ok):
                    reports[key] = pair
        for key, pair in reports.items():
            if pair.state == "broken":
                broken_since.setdefault(key, now)
            else:
                broken_since.pop(key, None)
        pairs = sorted(reports.values(), key=lambda p: (p.prefill, p.decode))
        settled = bool(pairs) and not unread and all(
            p.ok or now - broken_since.get((p.prefill, p.decode), now) >= broken_for_s for p in pairs
        )
        if settled or elapsed > timeout_s:
            ok = sum(p.ok for p in pairs)
            progress.done(f"KV paths: {ok} of {len(pairs)} verified in {elapsed:.0f} s"
                          + "".join(f"; {p.prefill} -> {p.decode} {p.state}" for p in pairs if not p.ok))
            return pairs, unread
        waiting = [f"{p.prefill} -> {p.decode} {p.state}" for p in pairs if not p.ok] + list(unread.values())
        progress.show(f"KV paths: {', '.join(waiting) or 'waiting for the KV agents'} ({elapsed:.0f} s)")
        time.sleep(poll_s)
