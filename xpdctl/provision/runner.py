"""Run one playbook through ansible-runner (Ansible's supported Python interface) and fold its events."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from xpdctl.errors import ExecutionError, NotInstalledError
from xpdctl.provision.events import EventFolder, ProgressCallback
from xpdctl.provision.models import RunResult

# Artifact folders (events, stdout) kept per cluster; older runs are rotated away.
_KEEP_RUNS = 20


def _requirement(distribution: str) -> str:
    """xpdctl's own requirement on ``distribution`` (e.g. ``ansible-runner>=2.4``), from its metadata."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        wanted = requires("xpdctl") or []
    except PackageNotFoundError:
        wanted = []
    base = [r for r in wanted if ";" not in r]  # not an extra's
    return next((r for r in base if re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() == distribution), distribution)


def _not_installed(what: str, distribution: str) -> NotInstalledError:
    return NotInstalledError(
        f"{what} is not installed in {sys.prefix}; install it with ./install.sh (in the xpdctl checkout) "
        f"or {sys.executable} -m pip install '{_requirement(distribution)}'"
    )


def _ansible_runner():
    try:
        import ansible_runner
    except ImportError:
        raise _not_installed("ansible-runner (Python package)", "ansible-runner") from None
    return ansible_runner


def _search_path() -> str:
    """PATH with this Python environment's bin first: xpdctl is often run without activating it, and
    the playbooks' preflight filter imports xpdctl, so ansible-playbook must be this environment's."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("ansible-playbook", path=path) is None:
        raise _not_installed("ansible-playbook (from ansible-core)", "ansible-core")
    return path


def ensure_ansible() -> None:
    """Raise :class:`NotInstalledError` naming the install command unless ansible-runner and
    ansible-playbook are here."""
    _ansible_runner()
    _search_path()


def targeted_hosts(inventory: dict[str, Any], limit: str | None) -> list[str]:
    """The hosts a ``--limit`` selects: comma-separated host names, group names or shell patterns."""
    groups: dict[str, list[str]] = {"all": list(inventory["all"].get("hosts", {}))}
    for name, group in inventory["all"].get("children", {}).items():
        groups[name] = list(group.get("hosts", {}))
    every = groups["all"]
    if not limit:
        return every
    chosen: set[str] = set()
    for pattern in filter(None, (part.strip() for part in limit.split(","))):
        if pattern in groups:
            chosen.update(groups[pattern])
        else:
            chosen.update(fnmatch.filter(every, pattern))
    return [host for host in every if host in chosen]


def run_playbook(
    playbook_dir: Path,
    playbook: str,
    inventory: dict[str, Any],
    private_data_dir: Path,
    *,
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    check: bool = False,
    tags: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    ansible_runner = _ansible_runner()
    search_path = _search_path()
    hosts = targeted_hosts(inventory, limit)
    if not hosts:
        raise ExecutionError(
            f"--limit {limit!r} matches no host of the inventory; name hosts or groups "
            f"({', '.join(targeted_hosts(inventory, None))})"
        )
    # ansible-runner records the environment and extra vars of each run in its artifacts.
    private_data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # ansible-runner reads env/cmdline, env/extravars, ... left by an earlier run whenever this run
    # passes none (a --check run would make the next run a check too): every input is this run's own.
    for stale in ("env", "inventory"):
        shutil.rmtree(private_data_dir / stale, ignore_errors=True)
    folder = EventFolder(on_progress)
    runner = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(playbook_dir),
        playbook=playbook,
        inventory=inventory,
        extravars=extravars or {},
        limit=",".join(hosts),
        cmdline="--check" if check else None,
        tags=tags,
        envvars={
            "ANSIBLE_CONFIG": str(playbook_dir / "ansible.cfg"),
            # Events carry the results; the human stdout is only kept in the artifacts.
            "ANSIBLE_NOCOLOR": "1",
            "PATH": search_path,
        },
        event_handler=folder.handle,
        rotate_artifacts=_KEEP_RUNS,
        quiet=True,
    )
    artifacts = Path(runner.config.artifact_dir)
    if folder.stats is None:
        stdout = artifacts / "stdout"
        tail = stdout.read_text(errors="replace").strip().splitlines()[-5:] if stdout.exists() else []
        raise ExecutionError(
            f"ansible-playbook {playbook} stopped before it finished ({runner.status}, exit {runner.rc}): "
            f"{' / '.join(line.strip() for line in tail) or 'no output'}; full output: {stdout}"
        )
    return RunResult(
        playbook=playbook,
        check=check,
        rc=runner.rc,
        runner_status=runner.status,
        hosts=folder.host_results(hosts),
        stats=folder.custom_stats,
        artifacts=str(artifacts),
    )
