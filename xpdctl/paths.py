"""Where xpdctl finds its shipped data and keeps per-cluster state."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from xpdctl.errors import ExecutionError

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


def cluster_state_path(cluster: str) -> Path:
    """Where a cluster's state is, without creating it: for commands that only read it."""
    return state_root() / cluster


def cluster_state_dir(cluster: str) -> Path:
    """A cluster's state dir, created: only commands that change the cluster write here, so what is
    in it (``rendered/``, ``audit.jsonl``, host keys) is what real runs did."""
    path = cluster_state_path(cluster)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    # Under a shared temp dir another user could have made it first: it holds rendered secrets.
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ExecutionError(
            f"{path} belongs to another user or others may read it; make it yours with mode 0700 or remove it"
        )
    return path


def scratch_root() -> Path:
    """Per-user scratch space for runs that must leave no state behind: ``XPDCTL_SCRATCH_DIR``, else
    ``$XDG_RUNTIME_DIR/xpdctl`` (cleared at logout or reboot), else ``xpdctl-<uid>`` in the temp dir."""
    env = os.environ.get("XPDCTL_SCRATCH_DIR")
    if env:
        return _private_dir(Path(env).expanduser())
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return _private_dir(Path(runtime) / "xpdctl")
    return _private_dir(Path(tempfile.gettempdir()) / f"xpdctl-{os.getuid()}")


def cluster_scratch_dir(cluster: str) -> Path:
    """A cluster's scratch space: what read-only runs (preflight, ``--check``, status) render, Ansible's
    output of those runs, host keys they saw first, SSH connections shared between commands. One per
    state root too, so clusters of one name kept in two state dirs do not share it."""
    root = hashlib.sha256(str(state_root().absolute()).encode()).hexdigest()[:8]
    return _private_dir(scratch_root() / f"{cluster}-{root}")


def known_hosts_file(cluster: str, *, record: bool) -> Path:
    """The host keys file SSH and Ansible use for a cluster (a key is trusted the first time, refused
    when it changes). Runs that change hosts ``record`` into the state dir's; read-only runs use a
    fresh copy of it in the scratch dir: a changed key is still refused, a new one is not recorded."""
    recorded = cluster_state_path(cluster) / "known_hosts"
    if record:
        cluster_state_dir(cluster)
        return recorded
    copy = cluster_scratch_dir(cluster) / "known_hosts"
    copy.write_bytes(recorded.read_bytes() if recorded.exists() else b"")
    return copy
