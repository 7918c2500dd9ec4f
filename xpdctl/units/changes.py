"""What ``apply`` does to each unit, from the content hashes wanted and the units' state now.

The one place restart-vs-reload is decided: the local executor, its supervisor, the local ``up``
and the remote executor all ask :func:`change`, so every way of running services treats a change
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from xpdctl.units.state import Change, ProcState, UnitState
from xpdctl.units.unitfile import reload_suffices


def change_for(state: ProcState | None, running: str | None, wanted: str) -> Change:
    """What a unit in ``state`` (None: not there), running with content hash ``running``, needs to
    run with ``wanted``."""
    if state is None:
        return "started"
    if state in ("failed", "stopped"):
        # Started from its files as they are now: a start needs no restart.
        return "started" if running == wanted else "restarted"
    if running == wanted:
        return "unchanged"
    if state == "running" and running is not None and reload_suffices(running, wanted):
        return "reloaded"
    return "restarted"


def decide(desired: Mapping[str, str], current: Mapping[str, UnitState]) -> dict[str, Change]:
    """unit -> change, for the units wanted (name -> content hash) and those running now."""
    changes: dict[str, Change] = {}
    for name, wanted in desired.items():
        now = current.get(name)
        changes[name] = change_for(now.state, now.content_hash, wanted) if now else change_for(None, None, wanted)
    for name in current:
        if name not in desired:
            changes[name] = "stopped"
    return changes
