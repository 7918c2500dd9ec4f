"""What ``apply`` does to each unit, from the content hashes wanted and the units' state now.

Shared by the local and the remote executor, so both treat a change the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from xpdctl.local.statefiles import UnitState
from xpdctl.local.unitfile import reload_suffices

Change = Literal["started", "restarted", "reloaded", "unchanged", "stopped"]


def decide(desired: Mapping[str, str], current: Mapping[str, UnitState]) -> dict[str, Change]:
    """unit -> change, for the units wanted (name -> content hash) and those running now."""
    changes: dict[str, Change] = {}
    for name, wanted in desired.items():
        now = current.get(name)
        if now is None:
            changes[name] = "started"
        elif now.state in ("failed", "stopped"):
            # Started from its files as they are now: a start needs no restart.
            changes[name] = "started" if now.content_hash == wanted else "restarted"
        elif now.content_hash == wanted:
            changes[name] = "unchanged"
        elif now.state == "running" and reload_suffices(now.content_hash, wanted):
            changes[name] = "reloaded"
        else:
            changes[name] = "restarted"
    for name in current:
        if name not in desired:
            changes[name] = "stopped"
    return changes
