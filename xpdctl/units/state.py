"""A cluster's services as every executor sees them: the units wanted, the units running, and the
three calls ``up``, ``status``, ``down`` and ``upgrade`` make of whatever runs them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel

from xpdctl.units.unitfile import Unit

ProcState = Literal["starting", "running", "restarting", "failed", "stopped"]
# What one `apply` does to a unit (xpdctl.units.changes decides).
Change = Literal["started", "restarted", "reloaded", "unchanged", "stopped"]


class DesiredUnit(BaseModel):
    unit: Unit
    host: str
    role: str


class UnitState(BaseModel):
    name: str
    host: str
    role: str
    content_hash: str
    state: ProcState
    pid: int | None = None
    pgid: int | None = None
    # Kernel start time (clock ticks since boot) of the group leader: tells a live group from a
    # recycled pid when the supervisor is gone and `down` has to clean up after it.
    leader_start_ticks: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: str | None = None  # "exit 1", "signal SIGKILL"
    log: str


class Executor(Protocol):
    def apply(self, units: Sequence[DesiredUnit]) -> dict[str, Change]:
        """Make exactly these units run: start new ones, restart changed ones, stop the rest."""

    def services(self) -> list[UnitState]:
        """Every unit the executor runs, with its process state."""

    def down(self) -> list[str]:
        """Stop every unit; return the names of the units that were stopped."""
