"""What one apply changes on one host, from what the host holds now (pure functions).

A unit runs the files it has on its host: the applier restarts or reloads a unit whenever it writes
one of its files, so comparing the host's files with the render's says what the unit needs, and
:func:`xpdctl.units.changes.change_for` (the one place restart vs reload is decided) says how.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from pydantic import BaseModel

from xpdctl.observe.drift import ExpectedFile
from xpdctl.remote.unitstate import proc_state
from xpdctl.render import UNIT_DIR
from xpdctl.units.changes import change_for
from xpdctl.units.state import Change

# Engines start first (they take minutes), then the agents that probe them, the router last; units
# stop the other way round (stop_rank), as the local executor does.
START_ORDER = {"prefill": 0, "decode": 0, "kv-agent": 1, "router": 2}
# What the applier does to a wanted unit for each change (an unchanged unit only when it is not enabled).
VERB = {"started": "start", "restarted": "restart", "reloaded": "reload", "unchanged": "enable"}


class HostFile(BaseModel):
    sha256: str
    mode: int


class HostSnapshot(BaseModel):
    """A host as the state script reads it: ``systemctl show`` properties of the cluster's units
    (name without ``.service``) and every xpdctl-owned file with its sha256 and mode."""

    units: dict[str, dict[str, str]] = {}
    files: dict[str, HostFile] = {}


class WantedUnit(BaseModel):
    name: str
    role: str
    files: list[str]  # host paths whose change restarts it
    reload_files: list[str] = []  # host paths whose change alone reloads it


class HostChanges(BaseModel):
    """In the order the applier does them: stop (and disable) units no longer wanted, write the
    render's files that differ, remove xpdctl's files the render no longer has, reload systemd,
    then every wanted unit in start order: started, restarted, reloaded or left alone (``units``),
    enabled where it is not (``enable``)."""

    stop: list[str] = []
    write: list[str] = []
    remove: list[str] = []
    daemon_reload: bool = False
    units: dict[str, Change] = {}
    enable: list[str] = []

    def needed(self) -> bool:
        return bool(self.stop or self.write or self.remove or self.enable
                    or any(c != "unchanged" for c in self.units.values()))


def files_hash(unit: WantedUnit, sha256: Mapping[str, str | None]) -> str:
    """A content hash of the unit's files as ``sha256`` (path -> digest, None: missing) has them, in
    the form :func:`~xpdctl.units.unitfile.reload_suffices` reads: ``<restart files>+<reload files>``."""

    def digest(paths: Sequence[str]) -> str:
        return hashlib.sha256("\n".join(f"{p} {sha256.get(p) or '-'}" for p in paths).encode()).hexdigest()

    return digest(unit.files) + (f"+{digest(unit.reload_files)}" if unit.reload_files else "")


def host_changes(wanted: Sequence[WantedUnit], expected: Mapping[str, ExpectedFile], host: HostSnapshot) -> HostChanges:
    """``expected``: the render's files for the host (path -> sha256 and mode)."""
    have = {p: f.sha256 for p, f in host.files.items()}
    want = {p: f.sha256 for p, f in expected.items()}
    names = {u.name for u in wanted}
    write = sorted(p for p, f in expected.items() if p not in host.files or host.files[p] != HostFile(**f.model_dump()))
    remove = sorted(p for p in host.files if p not in expected)
    units: dict[str, Change] = {}
    for unit in sorted(wanted, key=lambda u: (START_ORDER.get(u.role, 1), u.name)):
        props = host.units.get(unit.name)
        state = proc_state(props) if props else None
        units[unit.name] = change_for(state, files_hash(unit, have) if props else None, files_hash(unit, want))
    unit_dir = f"/{UNIT_DIR}/"
    return HostChanges(
        stop=sorted((n for n in host.units if n not in names), key=lambda n: (stop_rank(n), n)),
        write=write,
        remove=remove,
        daemon_reload=any(p.startswith(unit_dir) for p in write + remove),
        units=units,
        enable=[n for n in units if host.units.get(n, {}).get("UnitFileState") != "enabled"],
    )


def stop_rank(unit: str) -> int:
    """Where a unit stops in `down` (from its name: a unit the render dropped has no role left)."""
    return 0 if unit.endswith("-router") else 1 if unit.endswith("-kv-agent") else 2
