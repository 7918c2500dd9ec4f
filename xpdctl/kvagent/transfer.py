"""Run NIXL probes in long-lived worker processes and turn what they print into ``TransferResult``s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from xpdctl.kvagent.models import SourceInfo, TransferResult, WorkerRequest, WorkerResult
from xpdctl.kvagent.ucxinfo import read_transports, transport_class
from xpdctl.kvagent.worker import READY, RESULT

# Seconds a worker gets beyond the transfer timeout when it must start first: importing nixl on a
# busy host.
_STARTUP_ALLOWANCE_S = 60.0
_READY_MARGIN_S = 10.0


class _Worker:
    """One worker process (``xpdctl.kvagent.worker``) and what it printed to stderr."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path):
        self.proc = proc
        self.stderr_path = stderr_path
        self.ready = False

    def stderr_tail(self) -> str:
        try:
            return _last_lines(self.stderr_path.read_text(errors="replace"))
        except OSError:
            return ""

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class ProbeWorkers:
    """The probe worker processes of one KV agent, one per UCX environment, started on first use.

    A worker that timed out, failed to answer or was cancelled mid-probe is killed (its output can no
    longer be matched to a probe); the next probe starts a new one. ``close()`` stops them all.
    ``python``: the interpreter workers run (this one by default; another environment's to read with
    its NIXL, as the interop matrix does, benchmarks/nixl_interop.py). ``module``: the NIXL package the
    workers import (the kv-agent config's ``nixl_module``).
    """

    def __init__(self, python: str = sys.executable, module: str = "nixl") -> None:
        self._python = python
        self._module = module
        self._workers: dict[tuple[tuple[str, str], ...], _Worker] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="xpd-kvprobe-")

    async def _start(self, ucx_env: dict[str, str]) -> _Worker:
        env = {**os.environ, **ucx_env, "UCX_PROTO_INFO": "y"}
        # With a log file set, UCX writes its protocol tables there instead of stdout, where they are read.
        env.pop("UCX_LOG_FILE", None)
        stderr_path = Path(self._tmp.name) / f"worker-{secrets.token_hex(4)}.stderr"
        with stderr_path.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                self._python, "-m", "xpdctl.kvagent.worker", self._module,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
                limit=1 << 22,  # UCX's protocol tables come as long lines
            )
        return _Worker(proc, stderr_path)

    async def worker(self, ucx_env: dict[str, str]) -> _Worker:
        key = tuple(sorted(ucx_env.items()))
        worker = self._workers.get(key)
        if worker is None or worker.proc.returncode is not None:
            worker = self._workers[key] = await self._start(ucx_env)
        return worker

    async def discard(self, worker: _Worker) -> None:
        for key, known in list(self._workers.items()):
            if known is worker:
                del self._workers[key]
        await worker.kill()

    async def close(self) -> None:
        for worker in list(self._workers.values()):
            await self.discard(worker)
        self._tmp.cleanup()

    async def __aenter__(self) -> ProbeWorkers:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("[")]
    return " | ".join(lines[-count:])


async def _exchange(worker: _Worker, request: WorkerRequest) -> tuple[str, WorkerResult | None]:
    """Send one probe; everything the worker printed before its result line, and the result (None when
    the worker exited without one)."""
    if not worker.ready:
        while (line := await worker.proc.stdout.readline()) and line.decode(errors="replace").strip() != READY:
            pass
        if not line:
            return "", None
        worker.ready = True
    worker.proc.stdin.write(request.model_dump_json().encode() + b"\n")
    await worker.proc.stdin.drain()
    printed: list[str] = []
    while line := await worker.proc.stdout.readline():
        text = line.decode(errors="replace")
        if text.startswith(RESULT):
            return "".join(printed), WorkerResult.model_validate_json(text[len(RESULT):])
        printed.append(text)
    return "".join(printed), None


async def run_transfer(
    host: str,
    peer_host: str,
    source: SourceInfo,
    *,
    workers: ProbeWorkers,
    ucx_env: dict[str, str],
    timeout_s: float,
    startup_s: float = _STARTUP_ALLOWANCE_S,
) -> TransferResult:
    """Read the peer's probe buffers from this host over NIXL; never raises for a failed probe."""
    request = WorkerRequest(
        agent_name=f"xpd-kvagent-probe-{host}-{secrets.token_hex(4)}",
        source=source,
        timeout_s=timeout_s,
    )
    checked_at = now_iso()
    worker = await workers.worker(ucx_env)
    # A ready worker only creates an agent before the transfer; the margin keeps its own timeout
    # report (request.timeout_s) ahead of this one.
    limit = timeout_s + (_READY_MARGIN_S if worker.ready else startup_s)
    done = False
    try:
        try:
            printed, result = await asyncio.wait_for(_exchange(worker, request), limit)
        except (BrokenPipeError, ConnectionResetError):  # the worker died before it read the request
            printed, result = "", None
        done = result is not None
    except asyncio.TimeoutError:
        if not worker.ready:
            return TransferResult(
                peer_host=peer_host, ok=False, checked_at=checked_at, timed_out=True, never_started=True,
                reason=f"the NIXL probe to {peer_host} did not get to the network within {limit:.0f} s "
                "(its process was still importing nixl: this host is overloaded)",
            )
        return TransferResult(
            peer_host=peer_host, ok=False, checked_at=checked_at, timed_out=True,
            reason=f"the NIXL probe to {peer_host} did not finish within {limit:.0f} s; "
            "the host is overloaded or the transfer hangs",
        )
    finally:
        # A worker that did not answer (timeout, cancelled, died) is mid-probe or gone: never reused.
        if not done:
            with contextlib.suppress(ProcessLookupError):
                await workers.discard(worker)
    if result is None:
        return TransferResult(
            peer_host=peer_host, ok=False, checked_at=checked_at,
            reason=f"the NIXL probe worker exited with status {worker.proc.returncode} without a result: "
            f"{worker.stderr_tail() or _last_lines(printed) or 'no output'}",
        )
    transports = read_transports(printed)
    transport = ",".join(transports) or None
    classes = sorted({transport_class(t) for t in transports})
    return TransferResult(
        peer_host=peer_host,
        ok=result.ok,
        reason="" if result.ok else f"NIXL transfer from {peer_host} failed: {result.error}",
        transport=transport,
        transport_class=",".join(classes) or None,
        bandwidth_gbps=result.bandwidth_gbps,
        latency_ms=result.latency_ms,
        verified=result.verified,
        checked_at=checked_at,
    )
