"""What a benchmark starts, it stops: on a normal end, an exception, Ctrl-C, SIGTERM or SIGHUP.

Benchmarks start their services in sessions of their own (``start_new_session=True``), so a signal
to the benchmark's process group does not reach them, and a plain ``try/finally`` does not run when
the benchmark is killed by SIGTERM (a shell's ``timeout``, a CI runner). Found: router_bench.py left
its two simulator engines and its router listening an hour after it had exited.

    import children
    children.install()                       # first thing in main()
    proc = children.track(subprocess.Popen(..., start_new_session=True))
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time

_tracked: list[subprocess.Popen] = []


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Stop ``proc``'s whole process group when this process ends (its own session, see above)."""
    _tracked.append(proc)
    return proc


def stop_all(grace_s: float = 10.0) -> None:
    """SIGTERM every tracked process group still running, SIGKILL what is left after ``grace_s``."""
    running = [p for p in _tracked if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in running:
        # The group too: a service's own children (vLLM's engine core and workers) outlive their leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _tracked.clear()


def _exit_on(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally, then atexit runs stop_all


def install() -> None:
    atexit.register(stop_all)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on)
