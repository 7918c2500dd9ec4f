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
    cwd: Path | None = None,
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
