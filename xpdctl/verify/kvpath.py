"""Verifying every prefill->decode KV path through the cluster's running KV agents.

The agents probe their pairs anyway (side channel reachable, NIXL transfer between the two hosts'
agents); ``up`` waits for their verdicts on ``GET /pairs`` instead of running a second probe of its
own, which would double the work on a small machine and need NIXL in the command's own environment.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from pydantic import BaseModel

from xpdctl.errors import UnhealthyError
from xpdctl.verify.health import Progress


class PairReport(BaseModel):
    prefill: str
    decode: str
    ok: bool
    state: str  # ok | waiting | broken
    reason: str
    transport: str | None = None
    bandwidth_gbps: float | None = None
    latency_ms: float | None = None


def agent_pairs(agent_url: str) -> list[PairReport] | str:
    """The agent's verdicts, or why they could not be read."""
    try:
        with urllib.request.urlopen(f"{agent_url}/pairs", timeout=5) as resp:
            body = json.loads(resp.read())
        return [PairReport.model_validate(p) for p in body["pairs"]]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot read {agent_url}/pairs: {exc}"


def wait_kv_paths(agent_urls: Sequence[str], *, timeout_s: float, progress: Progress,
                  poll_s: float = 2.0) -> list[PairReport]:
    """Wait until every agent reports every pair ok; fail at once on a pair an agent calls broken."""
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        reports: dict[tuple[str, str], PairReport] = {}
        problems: list[str] = []
        for url in agent_urls:
            got = agent_pairs(url)
            if isinstance(got, str):
                problems.append(got)
                continue
            for pair in got:
                # A same-host pair appears in both ends' reports; the decode side's is the measured one.
                reports.setdefault((pair.prefill, pair.decode), pair)
        broken = [p for p in reports.values() if p.state == "broken"]
        if broken:
            progress.done(f"KV path: {len(broken)} pair(s) broken")
            raise UnhealthyError(
                f"{len(broken)} KV path(s) broken; the router will not use them. Fix the cause shown, then "
                "run `xpdctl up` again",
                details=[f"  {p.prefill} -> {p.decode}: {p.reason}" for p in broken],
            )
        ok = [p for p in reports.values() if p.ok]
        if reports and len(ok) == len(reports) and not problems:
            progress.done("KV path: " + "; ".join(
                f"{p.prefill} -> {p.decode} ok" + (f" via {p.transport}" if p.transport else "")
                + (f", {p.bandwidth_gbps:.1f} Gbit/s" if p.bandwidth_gbps else "")
                for p in ok
            ))
            return list(reports.values())
        waiting = [f"{p.prefill} -> {p.decode} {p.state}" for p in reports.values() if not p.ok]
        progress.show(f"KV path: {', '.join(waiting + problems) or 'waiting for the KV agent'} ({elapsed:.0f} s)")
        if elapsed > timeout_s:
            progress.done(f"KV path: not verified after {elapsed:.0f} s")
            raise UnhealthyError(
                f"the KV agents did not report every pair ok within {timeout_s:.0f} s; see `xpdctl status` "
                "and the kv-agent log",
                details=[f"  {w}" for w in waiting + problems],
            )
        time.sleep(poll_s)
