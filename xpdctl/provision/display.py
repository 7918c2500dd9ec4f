"""How provisioning looks to a person: live progress lines, the per-host summary, the preflight table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from xpdctl.errors import InputError
from xpdctl.output import table
from xpdctl.provision.events import TELLING, Progress
from xpdctl.provision.models import PreflightResult, ProvisionResult

_MARK = {"changed": "changed", "failed": "FAILED", "unreachable": "UNREACHABLE", "ignored": "ignored"}


def progress_line(progress: Progress) -> str:
    if progress.kind == "role":
        return f"{progress.host:<16} > {progress.role}"
    where = f"{progress.role}: {progress.task}" if progress.role else progress.task
    line = f"{progress.host:<16}   {_MARK[progress.kind]:<11} {where}"
    if progress.message and progress.kind in ("failed", "unreachable"):
        line += "\n" + "\n".join(f"{'':<18}{text}" for text in progress.message.splitlines()[:6])
    return line


def print_progress(progress: Progress) -> None:
    """Progress goes to stderr so ``-o json`` keeps stdout to one document."""
    click.echo(progress_line(progress), err=True)


def headline(message: str) -> str:
    """The one line of a failure message that says most: the first that names an error."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return next((line for line in lines if TELLING.search(line)), lines[0] if lines else "")


def provision_table(result: ProvisionResult) -> str:
    rows = []
    for name in sorted(result.hosts):
        host = result.hosts[name]
        note = ""
        if host.failure:
            role = f"{host.failure.role}: " if host.failure.role else ""
            note = f"{role}{host.failure.task}: {headline(host.failure.message)}"
        elif host.reboot_pending:
            note = "reboot pending: " + "; ".join(host.reboot_pending)
        if host.not_checked:
            note = "; ".join(filter(None, [note, "not checked: " + ", ".join(sorted(host.not_checked))]))
        rows.append([name, host.status, host.ok, host.changed, host.failed, host.unreachable, host.skipped, note])
    return table(["host", "status", "ok", "changed", "failed", "unreachable", "skipped", "note"], rows)


def preflight_table(result: PreflightResult) -> str:
    rows: list[list[Any]] = []
    for host in result.hosts:
        if not host.checks:
            rows.append([host.host, "-", "FAIL", host.error or "no report"])
        for check in host.checks:
            rows.append([host.host, check.name, check.status.upper() if check.status != "ok" else "ok", check.detail])
    return table(["host", "check", "result", "detail"], rows)


def parse_extra_vars(values: tuple[str, ...]) -> dict[str, Any]:
    """``-e KEY=VALUE`` (VALUE read as YAML, so ``-e 'preflight_os_allowed=[debian 12]'`` is a list) or ``-e @FILE``."""
    merged: dict[str, Any] = {}
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                loaded = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise InputError(f"-e {value}: cannot read {path} ({exc}); name a YAML file of variables") from None
            if not isinstance(loaded, dict):
                raise InputError(f"-e {value}: {path} must hold a mapping of variable names to values")
            merged.update(loaded)
        elif "=" in value:
            key, _, raw = value.partition("=")
            merged[key.strip()] = yaml.safe_load(raw) if raw else ""
        else:
            raise InputError(f"-e {value!r}: write KEY=VALUE or @FILE.yaml")
    return merged
