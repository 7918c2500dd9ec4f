"""Run one NIXL probe in a worker process and turn what it printed into a ``TransferResult``."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from xpdctl.kvagent.models import SourceInfo, TransferResult, WorkerRequest, WorkerResult
from xpdctl.kvagent.ucxinfo import read_transports, transport_class
from xpdctl.kvagent.worker import started_marker

# Seconds the worker gets beyond the transfer timeout: importing torch and nixl on a busy host.
_STARTUP_ALLOWANCE_S = 60.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("[")]
    return " | ".join(lines[-count:])


async def run_transfer(
    host: str,
    peer_host: str,
    source: SourceInfo,
    *,
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
    env = {**os.environ, **ucx_env, "UCX_PROTO_INFO": "y"}
    # With a log file set, UCX writes its protocol tables there instead of stdout, where they are read.
    env.pop("UCX_LOG_FILE", None)
    checked_at = now_iso()
    with tempfile.TemporaryDirectory(prefix="xpd-kvprobe-") as tmp:
        result_path = Path(tmp) / "result.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xpdctl.kvagent.worker", str(result_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(request.model_dump_json().encode()),
                timeout_s + startup_s,
            )
        except asyncio.TimeoutError:
            limit = timeout_s + startup_s
            if not started_marker(result_path).exists():
                return TransferResult(
                    peer_host=peer_host, ok=False, checked_at=checked_at, timed_out=True, never_started=True,
                    reason=f"the NIXL probe to {peer_host} did not get to the network within {limit:.0f} s "
                    "(its process was still importing torch and nixl: this host is overloaded)",
                )
            return TransferResult(
                peer_host=peer_host, ok=False, checked_at=checked_at, timed_out=True,
                reason=f"the NIXL probe to {peer_host} did not finish within {limit:.0f} s; "
                "the host is overloaded or the transfer hangs",
            )
        finally:
            # On a timeout, or when the agent shuts down mid-probe: no worker outlives its probe.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if not result_path.exists():
            return TransferResult(
                peer_host=peer_host, ok=False, checked_at=checked_at,
                reason=f"the NIXL probe worker exited with status {proc.returncode} without a result: "
                f"{_last_lines(stderr) or _last_lines(stdout) or 'no output'}",
            )
        worker = WorkerResult.model_validate_json(result_path.read_text())
    transports = read_transports(stdout)
    transport = ",".join(transports) or None
    classes = sorted({transport_class(t) for t in transports})
    return TransferResult(
        peer_host=peer_host,
        ok=worker.ok,
        reason="" if worker.ok else f"NIXL transfer from {peer_host} failed: {worker.error}",
        transport=transport,
        transport_class=",".join(classes) or None,
        bandwidth_gbps=worker.bandwidth_gbps,
        latency_ms=worker.latency_ms,
        verified=worker.verified,
        checked_at=checked_at,
    )
