"""What a provisioning run reports: per host counts, the failing task and its message, preflight."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from xpdctl.provision.preflight_checks import Check

# "not checked": a --check run that could not check some steps without changing the host (a package
# from a repository the host does not have yet, a unit not installed yet); never shown as "ok".
HostStatus = Literal["ok", "changed", "failed", "unreachable", "not run", "not checked"]


class Failure(BaseModel):
    role: str | None = Field(None, description="role of the failing task; null for a play-level task")
    task: str
    message: str


class HostResult(BaseModel):
    host: str
    status: HostStatus
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    failure: Failure | None = None
    reboot_pending: list[str] = Field(default_factory=list, description="why a reboot is needed (not done)")
    not_checked: dict[str, str] = Field(
        default_factory=dict, description="--check only: what could not be checked without changing the host, and why"
    )


class RunResult(BaseModel):
    """One ansible-runner run of one playbook."""

    playbook: str
    check: bool
    rc: int | None
    runner_status: str = Field(description="ansible-runner's status: successful, failed, timeout, canceled")
    hosts: dict[str, HostResult]
    stats: dict = Field(default_factory=dict, description="custom stats the playbook set (set_stats)")
    artifacts: str = Field(description="ansible-runner's artifact directory of this run (events, stdout)")

    @property
    def ok(self) -> bool:
        return bool(self.hosts) and all(h.status in ("ok", "changed", "not checked") for h in self.hosts.values())

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(name for name, h in self.hosts.items() if h.status in ("failed", "unreachable"))


class PreflightHost(BaseModel):
    host: str
    ok: bool
    reachable: bool
    checks: list[Check] = Field(default_factory=list)
    error: str | None = Field(None, description="why the checks did not run (unreachable, module failure)")


class PreflightResult(BaseModel):
    cluster: str
    ok: bool
    hosts: list[PreflightHost]
    artifacts: str


class ProvisionResult(BaseModel):
    cluster: str
    check: bool
    ok: bool
    hosts: dict[str, HostResult]
    preflight: dict[str, PreflightHost]
    artifacts: str
    retry: str | None = Field(None, description="the --limit that re-runs only the hosts that did not finish")
