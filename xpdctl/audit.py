"""The audit log: one JSON line per command that changes hosts (who, when, what, result).

Lines go to ``<cluster state dir>/audit.jsonl``. Each line is written with a single ``write`` on a
file opened for appending, so lines from commands running at once never interleave, and a line is
written even when the command fails (that is when people read the log).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from xpdctl.paths import cluster_state_dir

AUDIT_FILE = "audit.jsonl"


class AuditRecord(BaseModel):
    at: str  # ISO 8601, UTC
    who: str  # user@machine; the user behind sudo when there is one
    cluster: str
    command: str  # e.g. "upgrade"
    args: dict[str, Any] = {}
    result: str  # "ok" or "failed"
    error: str | None = None
    seconds: float
    details: dict[str, Any] = {}  # what the command changed, as it reports it


def who() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def audit_path(cluster: str) -> Path:
    return cluster_state_dir(cluster) / AUDIT_FILE


def append(record: AuditRecord) -> None:
    line = (record.model_dump_json() + "\n").encode()
    fd = os.open(audit_path(record.cluster), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_audit(cluster: str) -> list[AuditRecord]:
    path = audit_path(cluster)
    if not path.exists():
        return []
    return [AuditRecord.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def audited(cluster: str, command: str, **args: Any) -> Iterator[dict[str, Any]]:
    """Run the body and append one line for it, ``ok`` or ``failed`` with the error's message.

    The body may fill the yielded dict with what it changed; that goes into ``details``.
    """
    details: dict[str, Any] = {}
    start = time.monotonic()
    at = datetime.now(UTC).isoformat(timespec="seconds")

    def record(result: str, error: str | None) -> AuditRecord:
        return AuditRecord(at=at, who=who(), cluster=cluster, command=command, args=args, result=result,
                           error=error, seconds=round(time.monotonic() - start, 3), details=details)

    try:
        yield details
    except BaseException as exc:  # Ctrl-C mid-change is exactly what the log must show
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        append(record("failed", message))
        raise
    append(record("ok", None))


def cluster_of(inventory: Path) -> str:
    """The cluster an inventory file names (loading it fully reports every problem first)."""
    from xpdctl.inventory import load_inventory

    return load_inventory(inventory).inventory.cluster
