"""The local supervisor: one detached process per cluster that owns every service process.

It runs apart from the ``xpdctl`` command that started it (own session and process group), so
killing ``xpdctl`` leaves the cluster running and the next ``up`` adopts it. Each service runs in
its own process group (vLLM forks engine-core workers: stopping a service stops the whole group)
with PR_SET_PDEATHSIG, so services die with the supervisor instead of becoming orphans.

Control is by files and signals: SIGHUP = read ``desired.json`` and converge (a unit whose config
files alone changed is reloaded through its ExecReload=, as ``systemctl reload`` does), SIGTERM = stop
every service and exit. Run as ``python -m xpdctl.local.supervisor STATE_DIR``.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so every child is forked from
the main thread, which lives as long as the supervisor: the loop below is deliberately single-threaded.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from xpdctl.local.order import start_order
from xpdctl.local.statefiles import (
    Desired,
    Layout,
    SupervisorState,
    proc_start_ticks,
    write_model,
    write_pid_file,
)
from xpdctl.units.changes import change_for
from xpdctl.units.state import DesiredUnit, UnitState
from xpdctl.units.unitfile import ExecCommand

_PR_SET_PDEATHSIG = 1
# What a service sees of the supervisor's environment, like systemd's clean environment plus the
# variables that locate a home, caches and temporary files.
_PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "TZ")
# systemd counts these signals as a clean stop (Restart=on-failure does not restart after them).
_CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}
STOP_TIMEOUT_S = 20.0
_TICK_S = 0.2


def _log(message: str) -> None:
    # stdout is supervisor.log: one line per start, exit and stop, for a person reading what happened.
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


def _prepare_child(nice: int) -> None:
    """In the child before exec: die with the supervisor, and take the unit's Nice=."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if nice:
        os.nice(nice)


def _describe(status: int) -> tuple[str, bool, bool]:
    """(text, clean, by_signal) for a wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"signal {signal.Signals(sig).name}", sig in _CLEAN_SIGNALS, True
    code = os.WEXITSTATUS(status)
    return f"exit {code}", code == 0, False


def should_restart(policy: str, clean: bool, by_signal: bool) -> bool:
    return {
        "no": False,
        "always": True,
        "on-success": clean,
        "on-failure": not clean,
        "on-abnormal": by_signal and not clean,
        "on-abort": by_signal and not clean,
    }[policy]


@dataclass
class Service:
    spec: DesiredUnit
    state: str = "stopped"
    pid: int | None = None
    leader_ticks: int | None = None
    step: int = 0  # index into pre commands + main command
    started_at: float | None = None
    restarts: int = 0
    last_exit: str | None = None
    restart_at: float | None = None
    stopping: bool = False
    commands: list[ExecCommand] = field(default_factory=list)

    def __post_init__(self) -> None:
        unit = self.spec.unit
        self.commands = [*unit.exec_start_pre, unit.exec_start]

    @property
    def name(self) -> str:
        return self.spec.unit.name


class Supervisor:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.services: dict[str, Service] = {}
        self.applied_generation = 0
        self.reload = True
        self.terminate = False
        self.dirty = True

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, svc: Service) -> None:
        unit = svc.spec.unit
        cmd = svc.commands[svc.step]
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(unit.environment)
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.layout.unit_log(unit.name), "ab")
        log.write(f"--- xpdctl: starting {' '.join(cmd.argv)} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd.argv,
                env=env,
                cwd=unit.working_directory or "/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=functools.partial(_prepare_child, unit.nice),
            )
        except OSError as exc:
            log.write(f"--- xpdctl: cannot start: {exc}\n".encode())
            log.close()
            self._exited(svc, f"cannot start: {exc.strerror}", clean=False, by_signal=False)
            return
        log.close()
        svc.pid = proc.pid
        svc.leader_ticks = proc_start_ticks(proc.pid)
        _log(f"{unit.name}: started pid {proc.pid}: {' '.join(cmd.argv)}")
        # Popen's own bookkeeping is not used: children are reaped with os.waitpid below.
        proc.returncode = 0
        svc.state = "running" if svc.step == len(svc.commands) - 1 else "starting"
        if svc.step == 0:
            svc.started_at = time.time()
        self.dirty = True

    def _start(self, svc: Service) -> None:
        svc.step = 0
        svc.restart_at = None
        svc.stopping = False
        self._spawn(svc)

    def _kill_group(self, svc: Service, sig: int) -> None:
        if svc.pid is None:
            return
        try:
            os.killpg(svc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _exited(self, svc: Service, text: str, *, clean: bool, by_signal: bool) -> None:
        # What is left of the group (workers the main process forked) goes with it, as systemd's
        # KillMode=control-group does.
        self._kill_group(svc, signal.SIGKILL)
        _log(f"{svc.name}: pid {svc.pid} ended ({text})")
        svc.pid = None
        svc.leader_ticks = None
        self.dirty = True
        cmd = svc.commands[svc.step]
        if not svc.stopping and svc.step < len(svc.commands) - 1 and (clean or cmd.ignore_failure):
            svc.step += 1
            self._spawn(svc)
            return
        svc.last_exit = text
        if svc.stopping:
            svc.state = "stopped"
            return
        if should_restart(svc.spec.unit.restart, clean, by_signal):
            svc.state = "restarting"
            svc.restart_at = time.monotonic() + svc.spec.unit.restart_sec
        else:
            svc.state = "failed"

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # Looked up afresh: an exit handled in this loop may already have started the next command.
            svc = next((s for s in self.services.values() if s.pid == pid), None)
            if svc is not None:
                text, clean, by_signal = _describe(status)
                self._exited(svc, text, clean=clean, by_signal=by_signal)

    def _stop(self, services: list[Service]) -> None:
        """Stop services (SIGTERM to each group, SIGKILL after STOP_TIMEOUT_S), in the order given."""
        for svc in services:
            svc.stopping = True
            svc.restart_at = None
            if svc.pid is None:
                svc.state = "stopped"
            self._kill_group(svc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(s.pid is not None for s in services) and time.monotonic() < deadline:
            time.sleep(_TICK_S)
            self._reap()
        for svc in services:
            if svc.pid is not None:
                _log(f"{svc.name}: still running {STOP_TIMEOUT_S:.0f} s after SIGTERM; sending SIGKILL")
                self._kill_group(svc, signal.SIGKILL)
        while any(s.pid is not None for s in services):
            time.sleep(_TICK_S / 4)
            self._reap()
        self.dirty = True

    def _reload(self, svc: Service, spec: DesiredUnit) -> bool:
        """Run the new unit's ExecReload= against the running process (``$MAINPID``); on success the
        service runs ``spec`` from now on. False when the command failed: the caller restarts it."""
        command = spec.unit.exec_reload
        assert command is not None and svc.pid is not None
        argv = [w.replace("${MAINPID}", str(svc.pid)).replace("$MAINPID", str(svc.pid)) for w in command.argv]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _log(f"{svc.name}: reload ({' '.join(argv)}) failed: {exc}; restarting it instead")
            return False
        if done.returncode != 0 and not command.ignore_failure:
            said = (done.stderr or done.stdout).strip()[-300:]
            _log(f"{svc.name}: reload ({' '.join(argv)}) exited {done.returncode}: {said}; restarting it instead")
            return False
        _log(f"{svc.name}: reloaded pid {svc.pid}: {' '.join(argv)}")
        svc.spec = spec
        svc.commands = [*spec.unit.exec_start_pre, spec.unit.exec_start]
        self.dirty = True
        return True

    # -- desired state -------------------------------------------------------------------------

    def _converge(self) -> None:
        try:
            desired = Desired.model_validate_json(self.layout.desired.read_text())
        except (OSError, ValueError) as exc:
            print(f"xpdctl supervisor: cannot read {self.layout.desired}: {exc}", file=sys.stderr, flush=True)
            return
        wanted = {d.unit.name: d for d in desired.units}
        gone = [s for n, s in self.services.items() if n not in wanted]
        changed = []
        for n, s in self.services.items():
            if n not in wanted or s.spec.unit.content_hash == wanted[n].unit.content_hash:
                continue
            new = wanted[n]
            reloads = change_for(s.state, s.spec.unit.content_hash, new.unit.content_hash) == "reloaded"
            if not (reloads and new.unit.exec_reload is not None and self._reload(s, new)):
                changed.append(s)
        # Reverse start order: dependents stop before what they depend on.
        self._stop(list(reversed(gone + changed)))
        for svc in gone:
            del self.services[svc.name]
        for unit in start_order([d.unit for d in desired.units]):
            svc = self.services.get(unit.name)
            if svc is None or svc in changed:
                svc = Service(spec=wanted[unit.name], restarts=svc.restarts if svc else 0)
                self.services[unit.name] = svc
                self._start(svc)
            elif svc.state in ("failed", "stopped"):
                # `up` again is how a person retries a service that gave up.
                self._start(svc)
        self.applied_generation = desired.generation
        self.dirty = True

    def _write_state(self) -> None:
        units = [
            UnitState(
                name=s.name,
                host=s.spec.host,
                role=s.spec.role,
                content_hash=s.spec.unit.content_hash,
                state=s.state,  # type: ignore[arg-type]
                pid=s.pid,
                pgid=s.pid,
                leader_start_ticks=s.leader_ticks,
                started_at=s.started_at,
                restarts=s.restarts,
                last_exit=s.last_exit,
                log=str(self.layout.unit_log(s.name)),
            )
            for s in self.services.values()
        ]
        write_model(
            self.layout.state,
            SupervisorState(
                pid=os.getpid(), applied_generation=self.applied_generation, updated_at=time.time(), units=units
            ),
        )
        self.dirty = False

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "terminate", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "terminate", True))
        write_pid_file(self.layout)
        while not self.terminate:
            if self.reload:
                self.reload = False
                self._converge()
            self._reap()
            now = time.monotonic()
            for svc in self.services.values():
                if svc.state == "restarting" and svc.restart_at is not None and now >= svc.restart_at:
                    svc.restarts += 1
                    self._start(svc)
            if self.dirty:
                self._write_state()
            time.sleep(_TICK_S)
        order = start_order([s.spec.unit for s in self.services.values()])
        self._stop([self.services[u.name] for u in reversed(order)])
        self._write_state()
        self.layout.pid_file.unlink(missing_ok=True)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        print("usage: python -m xpdctl.local.supervisor STATE_DIR", file=sys.stderr)
        raise SystemExit(2)
    Supervisor(Layout(Path(argv[0]))).run()


if __name__ == "__main__":
    main(sys.argv[1:])
