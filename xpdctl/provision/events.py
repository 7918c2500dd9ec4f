"""Fold ansible-runner's event stream into live progress and a per-host summary.

ansible-runner hands every callback event to :meth:`EventFolder.handle` as a dict (``event``,
``event_data``); the folder remembers what each host is doing and the task that failed it, and
turns the final ``playbook_on_stats`` event into per-host counts. Nothing here starts Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from xpdctl.provision.models import Failure, HostResult

ProgressKind = Literal["role", "changed", "failed", "unreachable", "ignored"]


@dataclass(frozen=True)
class Progress:
    """One line of live progress: a host entered a role, changed something, or failed."""

    host: str
    kind: ProgressKind
    role: str | None
    task: str
    message: str = ""


ProgressCallback = Callable[[Progress], None]

# Keys of a task result that carry the reason it failed, most telling first.
_MESSAGE_KEYS = ("msg", "stderr", "module_stderr", "stdout", "module_stdout", "exception")
_MESSAGE_LIMIT = 600
_COMMAND_TAIL_LINES = 3
# Words of lines that explain a failure, e.g. a DKMS build error that dpkg printed long before its summary.
TELLING = re.compile(r"error|fail|unable|cannot|not found|no such|refused|no route|denied|timed out", re.IGNORECASE)
# Lines commands print that never explain a failure (Debian's debconf without apt-utils).
_NOISE = ("debconf: ",)


def failure_message(res: dict[str, Any]) -> str:
    """The reason a task failed, from its result, on a few lines a person can read."""
    failed_items = [item for item in res.get("results") or [] if isinstance(item, dict) and item.get("failed")]
    if failed_items:
        label = failed_items[0].get("item")
        inner = failure_message(failed_items[0])
        return f"{label}: {inner}" if isinstance(label, str) else inner
    if "rc" in res and (res.get("stderr") or res.get("stdout")):
        # A command (apt, dpkg, a script): its own words say more than Ansible's "non-zero return
        # code". dpkg prints a failing install script's error on stdout, apt its summary on stderr.
        out = str(res.get("stdout") or "").strip().splitlines()
        telling = [line for line in out[:-_COMMAND_TAIL_LINES] if TELLING.search(line)]
        err = [line for line in str(res.get("stderr") or "").strip().splitlines() if not line.startswith(_NOISE)]
        lines = telling + out[-_COMMAND_TAIL_LINES:] + err
        return _shorten("\n".join(lines) + f" (exit {res['rc']})", keep_end=True)
    parts = []
    for key in _MESSAGE_KEYS:
        value = res.get(key)
        if isinstance(value, list):
            value = "\n".join(map(str, value))
        if value and str(value).strip() and str(value).strip() not in parts:
            parts.append(str(value).strip())
        if len(parts) == 2:
            break
    return _shorten("\n".join(parts) or "failed without a message")


def _shorten(text: str, *, keep_end: bool = False) -> str:
    """At most _MESSAGE_LIMIT characters; a command's last lines hold its error, a message's first."""
    if len(text) <= _MESSAGE_LIMIT:
        return text
    return "..." + text[3 - _MESSAGE_LIMIT :] if keep_end else text[: _MESSAGE_LIMIT - 3] + "..."


class EventFolder:
    def __init__(self, on_progress: ProgressCallback | None = None):
        self._on_progress = on_progress or (lambda progress: None)
        self._role: dict[str, str | None] = {}
        # host -> (role that ran include_role, the role it included once seen)
        self._include: dict[str, tuple[str, str | None]] = {}
        self._failure: dict[str, Failure] = {}
        self.stats: dict[str, Any] | None = None

    def _shown_role(self, host: str, role: str | None, action: str) -> str | None:
        """The role a person thinks is running: a helper role included by another shows as that one."""
        if action.endswith("include_role") and role:
            self._include[host] = (role, None)
            return role
        parent, included = self._include.get(host, (None, None))
        if parent is None or role == parent:
            return role
        if included is None:
            self._include[host] = (parent, role)
            return parent
        if role == included:
            return parent
        del self._include[host]
        return role

    def handle(self, event: dict[str, Any]) -> bool:
        """ansible-runner's ``event_handler``: True keeps the event in the artifacts."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_stats":
            self.stats = data
        if not host or kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            return True
        role = self._shown_role(host, data.get("role") or None, data.get("task_action") or "")
        task = (data.get("task") or "").strip()
        res = data.get("res") or {}
        # A role is announced when it first does something, so roles skipped on a host stay quiet.
        if role and self._role.get(host) != role:
            self._role[host] = role
            self._on_progress(Progress(host, "role", role, task))
        if kind == "runner_on_ok":
            if res.get("changed"):
                self._on_progress(Progress(host, "changed", role, task))
        elif kind == "runner_on_failed" and data.get("ignore_errors"):
            self._on_progress(Progress(host, "ignored", role, task, failure_message(res)))
        else:
            message = failure_message(res)
            self._failure[host] = Failure(role=role, task=task, message=message)
            self._on_progress(Progress(host, "failed" if kind == "runner_on_failed" else "unreachable", role, task, message))
        return True

    @property
    def custom_stats(self) -> dict[str, Any]:
        return dict((self.stats or {}).get("artifact_data") or {})

    def host_results(self, hosts: list[str]) -> dict[str, HostResult]:
        """Counts per host from the final stats; hosts the run never reached are "not run"."""
        stats = self.stats or {}

        def count(key: str, host: str) -> int:
            return int((stats.get(key) or {}).get(host, 0))

        results = {}
        for host in hosts:
            counts = {
                "ok": count("ok", host),
                "changed": count("changed", host),
                "failed": count("failures", host),
                "unreachable": count("dark", host),
                "skipped": count("skipped", host),
                "rescued": count("rescued", host),
                "ignored": count("ignored", host),
            }
            if counts["unreachable"]:
                status = "unreachable"
            elif counts["failed"]:
                status = "failed"
            elif host not in (stats.get("processed") or {}):
                status = "not run"
            else:
                status = "changed" if counts["changed"] else "ok"
            failure = self._failure.get(host) if status in ("failed", "unreachable") else None
            results[host] = HostResult(host=host, status=status, failure=failure, **counts)
        return results
