"""Running the system tools test hosts are made of (ip, mount, debootstrap, nsenter)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from xpdctl.errors import ExecutionError


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> str:
    """Run ``argv``, return its stdout; a failure raises with the command and what it printed.

    ``env`` adds to this process's environment.
    """
    try:
        done = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, **env} if env else None, cwd=cwd,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise ExecutionError(
            f"{argv[0]} is not installed; test hosts need it (./install.sh --test installs it)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ExecutionError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ExecutionError(
            f"{' '.join(argv)} failed (exit {done.returncode}): {said[-1] if said else 'no output'}",
            details=said[-20:-1],
        )
    return done.stdout


def succeeds(argv: Sequence[str], timeout: float = 30) -> bool:
    """Whether ``argv`` exits 0 (for probes such as "does this link exist")."""
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def recorded_process(pid_file: Path, *markers: bytes) -> int | None:
    """The PID in ``pid_file`` if that process runs and its command line has one of ``markers``."""
    try:
        value = int(pid_file.read_text())
        cmdline = Path(f"/proc/{value}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return value if any(marker in cmdline for marker in markers) else None


def spawn_server(argv: Sequence[str], log: Path, pid_file: Path) -> None:
    """Start a long-running server detached from this process (it outlives the command), logging to ``log``."""
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file.write_text(str(process.pid))
