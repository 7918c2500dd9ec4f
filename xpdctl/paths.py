"""Where xpdctl finds its shipped data and keeps per-cluster state."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent


def data_dir(name: str) -> Path:
    """A shipped data folder (templates, playbooks, inventory).

    Wheels carry them under ``xpdctl/_data``; a source checkout (editable install) keeps them at the
    repository root, which is where people edit them.
    """
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    return _REPO_ROOT / name


def state_root() -> Path:
    """Root of per-cluster state (logs, pids, audit, upgrade state). ``XPDCTL_STATE_DIR`` overrides."""
    env = os.environ.get("XPDCTL_STATE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "xpdctl"


def cluster_state_dir(cluster: str) -> Path:
    path = state_root() / cluster
    path.mkdir(parents=True, exist_ok=True)
    return path
