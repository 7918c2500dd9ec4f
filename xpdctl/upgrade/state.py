"""The persisted rollout: which phase and step it is at, and what each instance has been through.

Modelled on the NVIDIA GPU Operator's upgrade states (its upgrade controller:
upgrade-required, cordon, wait-for-jobs, drain, restart, validation, uncordon, done or failed): every step is recorded
before it runs, so a rollout interrupted anywhere continues with ``--resume`` at the step it was in
(steps are idempotent); a failed rollout stays ``failed`` until a person resumes it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from xpdctl.errors import ExecutionError

RolloutStatus = Literal["running", "failed", "done"]
# pending -> <the step it is in> -> done; failed (rolled back to the old version, or not, see error)
InstanceStatus = str
Kind = Literal["instance", "surge", "green"]
Source = Literal["target", "alt"]


class Instance(BaseModel):
    name: str
    host: str
    role: str
    url: str
    kind: Kind = "instance"
    source: Source = "target"  # which rendered tree its new files come from
    generation: str  # the label it serves with once upgraded
    status: InstanceStatus = "pending"
    error: str | None = None


class Phase(BaseModel):
    name: str  # "batch 1", "surge up", "green up", ...
    instances: list[str]
    steps: list[str]
    rollback: bool = False  # a failure puts these instances back on the old version
    seconds: dict[str, float] = {}  # step -> how long it took (the last run of it)


class Retarget(BaseModel):
    """A ``--resume`` that gave instances not upgraded yet the inventory's files as they were then."""

    at: str
    instances: list[str]
    image: str | None = None  # the --image in effect from then on


class Rollout(BaseModel):
    cluster: str
    pool: str
    mode: Literal["in-place", "blue-green"]
    by: str
    started_at: str
    status: RolloutStatus = "running"
    phase: int = 0
    step: int = 0
    phases: list[Phase]
    instances: dict[str, Instance]
    pool_size: int
    floor: int  # instances of the pool that serve at every moment
    old_generation: str
    new_generation: str
    error: str | None = None
    finished_at: str | None = None
    image: str | None = None  # --image it runs with; --resume keeps it unless given another
    alt_port_offset: int = 1000  # surge and green instances: the inventory's ports plus this
    retargets: list[Retarget] = []

    def current(self) -> tuple[Phase, str] | None:
        if self.phase >= len(self.phases):
            return None
        phase = self.phases[self.phase]
        return phase, phase.steps[self.step]


class Layout:
    """Files of one cluster's rollouts under ``<state dir>/upgrade``."""

    def __init__(self, state_dir: Path):
        self.root = state_dir / "upgrade"
        self.rollout = self.root / "rollout.json"
        self.lock = self.root / "lock"
        self.previous = self.root / "previous"  # the deployed render when the rollout began
        self.target = self.root / "target"  # the render of the inventory being rolled out (again at --resume)
        self.alt = self.root / "alt"  # surge / green instances: other names, other ports


def load_rollout(layout: Layout) -> Rollout | None:
    if not layout.rollout.exists():
        return None
    return Rollout.model_validate(json.loads(layout.rollout.read_text()))


def save_rollout(layout: Layout, rollout: Rollout) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    tmp = layout.rollout.with_suffix(".tmp")
    tmp.write_text(rollout.model_dump_json(indent=2) + "\n")
    os.replace(tmp, layout.rollout)  # a reader never sees half a file, a crash never leaves one


@contextmanager
def exclusive(layout: Layout) -> Iterator[None]:
    """One upgrade of a cluster at a time; the lock dies with its process, so no stale lock is left."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExecutionError(
                f"another `xpdctl upgrade` of this cluster is running (it holds {layout.lock}); wait for it"
            ) from None
        yield
