"""Waiting for services to answer ``/health``, with a progress line a person can watch.

vLLM engines take a minute or more to load on a small CPU machine; ``up`` shows each one's state and
elapsed time instead of going quiet, and stops early when a service crashes while starting.
"""

from __future__ import annotations

import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from xpdctl.errors import ExecutionError
from xpdctl.units.state import UnitState


class Target(BaseModel):
    name: str
    url: str  # base URL; /health is appended


def probe(url: str, timeout_s: float = 2.0, context: ssl.SSLContext | None = None) -> str:
    """"healthy", or a few words on why not ("refused", "HTTP 503", "timeout"). ``context``: what an
    https URL is verified against (the router's CA), else the system's store."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s, context=context) as resp:
            return "healthy" if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            return "refused"
        if isinstance(reason, TimeoutError):
            return "timeout"
        return str(reason)
    except (TimeoutError, ConnectionError) as exc:
        return type(exc).__name__


def log_tail(path: str, lines: int = 15) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return ["  | " + line for line in text.splitlines()[-lines:]]


class Progress:
    """One status line: rewritten in place on a terminal, printed on change (or every 15 s) otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""
        self.last_at = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif text.split(" (")[0] != self.last.split(" (")[0] or time.monotonic() - self.last_at > 15:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_at = time.monotonic()
        self.last = text

    def done(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def wait_healthy(
    targets: Sequence[Target],
    *,
    timeout_s: float,
    what: str,
    unit_states: Callable[[], dict[str, UnitState]],
    progress: Progress,
    poll_s: float = 1.0,
) -> float:
    """Wait until every target is healthy; returns the seconds it took.

    Fails at once, with the end of its log, when a service exits while we wait: an engine that
    crashes on start usually crashes again, and a person should see why now, not after the timeout.
    """
    start = time.monotonic()
    healthy: dict[str, float] = {}
    while True:
        elapsed = time.monotonic() - start
        states = unit_states()
        for t in targets:
            unit = states.get(t.name)
            if unit is not None and unit.state in ("failed", "restarting", "stopped"):
                progress.done(f"{what}: {t.name} exited ({unit.last_exit}) after {elapsed:.0f} s")
                raise ExecutionError(
                    f"{t.name} exited while starting ({unit.last_exit}); its log is {unit.log}. "
                    "Fix the cause, then run `xpdctl up` again (or `xpdctl down` to stop everything)",
                    details=log_tail(unit.log),
                )
        parts = []
        for t in targets:
            if t.name not in healthy:
                status = probe(t.url)
                if status == "healthy":
                    healthy[t.name] = elapsed
            parts.append(f"{t.name} {'healthy' if t.name in healthy else 'starting'}")
        progress.show(f"{what}: {', '.join(parts)} ({elapsed:.0f} s)")
        if len(healthy) == len(targets):
            progress.done(f"{what}: all healthy in {elapsed:.0f} s")
            return elapsed
        if elapsed > timeout_s:
            waiting = [t.name for t in targets if t.name not in healthy]
            progress.done(f"{what}: timed out after {elapsed:.0f} s")
            logs = [states[n].log for n in waiting if n in states]
            raise ExecutionError(
                f"{', '.join(waiting)} not healthy after {timeout_s:.0f} s; see {', '.join(logs) or 'their logs'}. "
                "A loaded machine starts engines slowly: retry with a larger --timeout",
            )
        time.sleep(poll_s)
