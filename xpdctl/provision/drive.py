"""``provision()`` and ``preflight()``: the playbooks run against an inventory's hosts.

Both take a loaded inventory and the directory ``xpdctl render`` wrote, run one playbook through
ansible-runner with live progress, and return a pydantic result for a table or ``-o json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xpdctl.inventory import LoadedInventory
from xpdctl.paths import cluster_scratch_dir, cluster_state_dir, cluster_state_path, data_dir, known_hosts_file
from xpdctl.provision.events import ProgressCallback
from xpdctl.provision.hosts import ansible_inventory
from xpdctl.provision.models import PreflightHost, PreflightResult, ProvisionResult, RunResult
from xpdctl.provision.preflight_checks import HostReport
from xpdctl.provision.runner import ensure_ansible, run_playbook, targeted_hosts


def work_dir(cluster: str, *, record: bool) -> Path:
    """Where a run keeps its render and Ansible's output. Runs that change hosts ``record`` into the
    cluster's state dir, whose ``rendered/`` `upgrade`, `down` and `plan` then take as deployed;
    read-only runs (preflight, ``--check``) use the cluster's scratch dir and leave no state behind."""
    return cluster_state_dir(cluster) if record else cluster_scratch_dir(cluster)


def render_now(loaded: LoadedInventory, *, record: bool = True) -> Path:
    """Render the plan into the run's :func:`work_dir` and return where. Every run starts here, so a
    machine without Ansible fails before its first run records a render."""
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files, write_tree

    ensure_ansible()

    tree = work_dir(loaded.inventory.cluster, record=record) / "rendered"
    write_tree(render_files(build_plan(loaded, os.environ)), tree)
    return tree


def _model_source_dir(loaded: LoadedInventory, state_dir: Path) -> Path | None:
    """Where a model xpdctl builds (model.builder) is built on this machine, to be copied to the hosts."""
    builder = loaded.inventory.model.builder
    return None if builder is None else state_dir / "models" / builder


def _run(
    loaded: LoadedInventory,
    render_dir: Path,
    playbook: str,
    *,
    limit: str | None,
    check: bool,
    record: bool,
    extravars: dict[str, Any],
    on_progress: ProgressCallback | None,
    tags: str | None = None,
) -> RunResult:
    cluster = loaded.inventory.cluster
    source_dir = _model_source_dir(loaded, cluster_state_path(cluster))
    inventory = ansible_inventory(
        loaded.inventory, render_dir, known_hosts=known_hosts_file(cluster, record=record), model_source_dir=source_dir
    )
    targets = targeted_hosts(inventory, limit)
    needs_model = any(inventory["all"]["hosts"][name]["xpd_model"] for name in targets)
    if source_dir is not None and needs_model and record:
        from xpdctl.models import ensure_model

        ensure_model(loaded.inventory.model.builder or "", source_dir)
    return run_playbook(
        data_dir("playbooks"),
        playbook,
        inventory,
        work_dir(cluster, record=record) / "ansible",
        extravars=extravars,
        limit=limit,
        check=check,
        tags=tags,
        on_progress=on_progress,
    )


def _preflight_hosts(run: RunResult) -> dict[str, PreflightHost]:
    reports = run.stats.get("xpd_preflight") or {}
    hosts = {}
    for name, result in run.hosts.items():
        if name in reports:
            report = HostReport.model_validate(reports[name])
            hosts[name] = PreflightHost(host=name, ok=report.ok, reachable=True, checks=report.checks)
        else:
            reachable = result.status != "unreachable"
            error = result.failure.message if result.failure else "the checks did not run"
            hosts[name] = PreflightHost(host=name, ok=False, reachable=reachable, error=error)
    return hosts


def preflight(
    loaded: LoadedInventory,
    render_dir: Path,
    *,
    limit: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> PreflightResult:
    """Read-only checks of every host against the inventory and the rendered plan."""
    run = _run(
        loaded, render_dir, "preflight.yml", limit=limit, check=False, record=False,
        extravars=dict(extra_vars or {}), on_progress=on_progress,
    )  # fmt: skip
    hosts = _preflight_hosts(run)
    return PreflightResult(
        cluster=loaded.inventory.cluster,
        ok=all(h.ok for h in hosts.values()),
        hosts=[hosts[name] for name in sorted(hosts)],
        artifacts=run.artifacts,
    )


def provision(
    loaded: LoadedInventory,
    render_dir: Path,
    *,
    limit: str | None = None,
    check: bool = False,
    allow_reboot: bool = False,
    extra_vars: dict[str, Any] | None = None,
    tags: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> ProvisionResult:
    """Preflight, then prepare every host and install, enable and start its rendered services.

    A host that fails (preflight, a package, an unreachable address) drops out and is reported with
    the failing task and its message; the others carry on. Running it again resumes: every step
    probes before it changes anything. ``check`` changes nothing and reports what would change, and
    what it could not check without changing the host (``not_checked``, status "not checked").
    ``tags`` runs only those roles (comma-separated role names; preflight always runs).
    """
    extravars = {**(extra_vars or {}), "xpd_allow_reboot": allow_reboot}
    run = _run(loaded, render_dir, "site.yml", limit=limit, check=check, record=not check, extravars=extravars,
               on_progress=on_progress, tags=tags)  # fmt: skip
    pending = run.stats.get("xpd_reboot_pending") or {}
    unchecked = run.stats.get("xpd_not_checked") or {}
    hosts = {}
    for name, result in run.hosts.items():
        update: dict[str, Any] = {"reboot_pending": list(pending.get(name, []))}
        if unchecked.get(name):
            update["not_checked"] = dict(unchecked[name])
            if result.status in ("ok", "changed"):
                update["status"] = "not checked"
        hosts[name] = result.model_copy(update=update)
    failed = run.failed_hosts
    return ProvisionResult(
        cluster=loaded.inventory.cluster,
        check=check,
        ok=run.ok,
        hosts=hosts,
        preflight=_preflight_hosts(run),
        artifacts=run.artifacts,
        retry=",".join(failed) if failed else None,
    )
