"""What a benchmark starts (services on loopback, each with its log), it stops: on a normal end, an
exception, Ctrl-C, SIGTERM or SIGHUP.

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
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_tracked: list[subprocess.Popen] = []


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Stop ``proc``'s whole process group when this process ends (its own session, see above)."""
    _tracked.append(proc)
    return proc


def stop_all(grace_s: float = 10.0) -> None:
    """SIGTERM every tracked process group, SIGKILL what is left after ``grace_s``."""
    _stop(list(_tracked), grace_s)
    _tracked.clear()


def stop(service: Service | None, grace_s: float = 10.0) -> None:
    """Stop one service started with :func:`spawn` (the others keep running), as :func:`stop_all` does."""
    if service is not None and service.popen in _tracked:
        _stop([service.popen], grace_s)
        _tracked.remove(service.popen)


def _stop(running: list[subprocess.Popen], grace_s: float) -> None:
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


def _exit_on(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally, then atexit runs stop_all


def install() -> None:
    atexit.register(stop_all)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on)


@dataclass
class Service:
    name: str
    url: str
    popen: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(name: str, argv: list[str], cpus: str | None, logs: Path, env: dict | None = None) -> subprocess.Popen:
    log = logs / f"{name}.log"
    command = (["taskset", "-c", cpus] if cpus else []) + argv
    with log.open("wb") as out:
        return track(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                               env={**os.environ, **(env or {})}, start_new_session=True))


def wait_healthy(service: Service, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.popen.poll() is not None:
            sys.exit(f"{service.name} exited with {service.popen.returncode}; its log ({service.log}):\n"
                     + service.log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(service.url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"{service.name} at {service.url} was not healthy after {timeout_s:.0f} s; see {service.log}")


def vllm_router_binary() -> str:
    path = Path(sys.executable).parent / "vllm-router"
    if not path.exists():
        sys.exit(f"vllm-router is not installed next to {sys.executable}: `pip install vllm-router` "
                 "(it is in xpdctl's test extras), or leave it out with --modes direct,router")
    return str(path)
