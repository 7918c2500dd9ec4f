"""The files the local executor and its supervisor share in the cluster's state directory.

``up`` writes ``desired.json`` and signals the supervisor; the supervisor converges to it and writes
``state.json`` after every change. Both are replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

from xpdctl.units.state import DesiredUnit, UnitState


class Desired(BaseModel):
    # Bumped on every write; the supervisor echoes the generation it has applied in state.json.
    generation: int
    units: list[DesiredUnit]


class SupervisorState(BaseModel):
    pid: int
    applied_generation: int = 0
    updated_at: float
    units: list[UnitState] = []


class Layout:
    """Where each file lives under one cluster's local state directory."""

    def __init__(self, root: Path):
        self.root = root
        self.desired = root / "desired.json"
        self.state = root / "state.json"
        self.pid_file = root / "supervisor.pid"
        self.supervisor_log = root / "supervisor.log"
        self.logs = root / "logs"

    def unit_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_model(path: Path, model: BaseModel) -> None:
    write_atomic(path, model.model_dump_json(indent=2) + "\n")


def read_state(layout: Layout) -> SupervisorState | None:
    try:
        return SupervisorState.model_validate_json(layout.state.read_text())
    except (OSError, ValueError):
        return None


def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: with the pid, it names one process for the life of the machine."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def proc_alive(pid: int) -> bool:
    """True for a running process; a zombie only waits for its parent to collect its status."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def proc_pgid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[2])


def write_pid_file(layout: Layout) -> None:
    pid = os.getpid()
    write_atomic(layout.pid_file, json.dumps({"pid": pid, "start_ticks": proc_start_ticks(pid)}) + "\n")


def live_supervisor(layout: Layout) -> int | None:
    """The pid of this cluster's running supervisor, or None (never a recycled pid)."""
    try:
        data = json.loads(layout.pid_file.read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or proc_start_ticks(pid) != data.get("start_ticks") or not proc_alive(pid):
        return None
    return pid
