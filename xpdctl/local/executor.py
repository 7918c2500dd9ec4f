"""Runs a cluster's rendered units on this machine, through the cluster's detached supervisor.

:class:`LocalExecutor` is the :class:`~xpdctl.units.state.Executor` for ``runtime: native``
clusters on this machine; :class:`~xpdctl.remote.executor.RemoteExecutor` runs them on hosts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xpdctl.errors import ExecutionError
from xpdctl.local.statefiles import (
    Desired,
    Layout,
    live_supervisor,
    proc_alive,
    proc_pgid,
    proc_start_ticks,
    read_state,
    write_model,
)
from xpdctl.local.supervisor import STOP_TIMEOUT_S
from xpdctl.units.changes import decide
from xpdctl.units.state import Change, DesiredUnit, UnitState


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and proc_pgid(int(entry.name)) == pgid and proc_alive(int(entry.name)):
            members.append(int(entry.name))
    return members


class LocalExecutor:
    def __init__(self, state_dir: Path, *, apply_timeout_s: float = 120.0):
        self.layout = Layout(state_dir / "services")
        self.apply_timeout_s = apply_timeout_s

    # -- Executor ------------------------------------------------------------------------------

    def apply(self, units: Sequence[DesiredUnit]) -> dict[str, Change]:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        pid = live_supervisor(self.layout)
        current = {u.name: u for u in self.services()} if pid else {}
        changes = decide({d.unit.name: d.unit.content_hash for d in units}, current)
        previous = read_state(self.layout)
        generation = (previous.applied_generation if previous else 0) + 1
        write_model(self.layout.desired, Desired(generation=generation, units=list(units)))
        if pid is None:
            self._sweep_orphans()
            self._spawn_supervisor()
        else:
            os.kill(pid, signal.SIGHUP)
        self._wait_applied(generation)
        return changes

    def services(self) -> list[UnitState]:
        state = read_state(self.layout)
        if state is None:
            return []
        if live_supervisor(self.layout) is None:
            # The supervisor is gone (killed, or the machine rebooted): nothing it ran is supervised.
            return [
                u.model_copy(update={"state": "stopped", "pid": None, "last_exit": u.last_exit or "supervisor gone"})
                for u in state.units
            ]
        return state.units

    def down(self) -> list[str]:
        state = read_state(self.layout)
        names = [u.name for u in state.units if u.state != "stopped"] if state else []
        pid = live_supervisor(self.layout)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S + 10
            while proc_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._sweep_orphans()
        deadline = time.monotonic() + 5  # SIGKILLed processes take a moment to be gone
        while (left := self.leftover_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            raise ExecutionError(
                f"processes {left} survived `down`; kill them (kill -9 {' '.join(map(str, left))}) and report a bug"
            )
        self.layout.desired.unlink(missing_ok=True)
        self.layout.state.unlink(missing_ok=True)
        self.layout.pid_file.unlink(missing_ok=True)
        return names

    # -- helpers -------------------------------------------------------------------------------

    def leftover_processes(self) -> list[int]:
        """Live processes of groups this cluster's supervisor started (empty after a clean ``down``)."""
        state = read_state(self.layout)
        pids: list[int] = []
        for unit in state.units if state else []:
            if unit.pgid is None:
                continue
            leader_ticks = proc_start_ticks(unit.pgid)
            if leader_ticks is not None and leader_ticks != unit.leader_start_ticks:
                continue  # the pid now names another process: not ours
            pids += _group_members(unit.pgid)
        return pids

    def _sweep_orphans(self) -> None:
        """Kill what a supervisor that died without stopping its services left behind."""
        for pid in self.leftover_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _spawn_supervisor(self) -> None:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        with open(self.layout.supervisor_log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xpdctl.local.supervisor", str(self.layout.root)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this command, its terminal and its Ctrl-C
                cwd="/",
            )
        deadline = time.monotonic() + 30
        while live_supervisor(self.layout) is None:
            if proc.poll() is not None:
                raise ExecutionError(
                    f"the local supervisor exited at start ({proc.returncode}); see {self.layout.supervisor_log}"
                )
            if time.monotonic() > deadline:
                raise ExecutionError(f"the local supervisor did not start in 30 s; see {self.layout.supervisor_log}")
            time.sleep(0.1)

    def _wait_applied(self, generation: int) -> None:
        deadline = time.monotonic() + self.apply_timeout_s
        while True:
            state = read_state(self.layout)
            if state is not None and state.applied_generation >= generation:
                return
            if live_supervisor(self.layout) is None:
                raise ExecutionError(f"the local supervisor died while applying; see {self.layout.supervisor_log}")
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"the local supervisor did not apply the new units in {self.apply_timeout_s:.0f} s; "
                    f"see {self.layout.supervisor_log}"
                )
            time.sleep(0.1)
