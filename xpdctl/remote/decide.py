"""What one ``apply`` does on one host, decided from the host's state (pure functions).

A unit's content hash (of its unit file and every file it reads: see ``xpdctl.units.unitfile``) is
recorded on the host when the executor (re)starts it. A unit started by Ansible (``up``) has no
record yet: it runs the files it has on the host, so when they are the deployed render's its hash is
the render's, and the first ``apply`` records it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from xpdctl.observe.drift import ExpectedFile
from xpdctl.units.state import Change

UNKNOWN_HASH = ""
# A record is (content hash, main pid of the unit when it was written).
Record = tuple[str, str]


def parse_records(text: str) -> dict[str, Record]:
    """The state script's ``recorded`` section: ``<unit> <hash> <main pid>`` lines."""
    records = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2:
            records[words[0]] = (words[1], words[2] if len(words) > 2 else "")
    return records


def valid_record(record: Record | None, main_pid: str | int | None) -> str | None:
    """The recorded hash while the unit still runs the process that was recorded, else None."""
    if record is None or not record[1] or record[1] == "0" or str(main_pid or "") != record[1]:
        return None
    return record[0]  # runs files other than the deployed render's, and never recorded: restart to be sure


def running_hash(recorded: str | None, unit_files: list[str], expected: Mapping[str, ExpectedFile],
                 present: Mapping[str, str | None], deployed_hash: str | None) -> str:
    """The content hash a unit runs with: the host's record, else the deployed render's when the
    host holds exactly the render's files of the unit."""
    if recorded:
        return recorded
    if deployed_hash and unit_files and all(
        p in expected and present.get(p) == expected[p].sha256 for p in unit_files
    ):
        return deployed_hash
    return UNKNOWN_HASH


class HostActions(BaseModel):
    """What the apply script does on one host, in this order: stop (and disable) units no longer
    wanted, write the render's files that differ, remove xpdctl's files the render no longer has,
    reload systemd, start, restart, reload units; record the hash of every wanted unit."""

    stop: list[str] = []
    write: list[str] = []  # host paths
    remove: list[str] = []
    start: list[str] = []
    restart: list[str] = []
    reload: list[str] = []  # units that apply their changed config files on `systemctl reload`
    record: dict[str, str] = {}  # unit -> content hash to record (only where the record differs)

    def needed(self) -> bool:
        return bool(self.stop or self.write or self.remove or self.start or self.restart or self.reload or self.record)


def host_actions(changes: Mapping[str, Change], desired: Mapping[str, str], recorded: Mapping[str, str],
                 expected: Mapping[str, ExpectedFile], present: Mapping[str, str | None],
                 modes: Mapping[str, int]) -> HostActions:
    """``present``/``modes``: sha256 and mode of every xpdctl-owned file the host has now."""
    write = sorted(p for p, f in expected.items() if present.get(p) != f.sha256 or modes.get(p) != f.mode)
    return HostActions(
        stop=sorted(n for n, c in changes.items() if c == "stopped"),
        write=write,
        remove=sorted(p for p in present if p not in expected),
        start=sorted(n for n, c in changes.items() if c == "started"),
        restart=sorted(n for n, c in changes.items() if c == "restarted"),
        reload=sorted(n for n, c in changes.items() if c == "reloaded"),
        record={n: h for n, h in sorted(desired.items()) if recorded.get(n) != h},
    )
