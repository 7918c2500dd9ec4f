"""Script output in sections: each starts with a ``<marker> <name> <rc>`` line, where the marker
carries a random nonce so no file or tool output can forge a section, and ``rc`` is the exit status
of what the section reports (``-`` when its tool is not installed)."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

ABSENT = None


@dataclass(frozen=True)
class Section:
    rc: int | None  # None: the tool is not installed on the host; -1: it never finished
    text: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def new_marker() -> str:
    return f"@@xpd-{secrets.token_hex(6)}@@"


def quote_glob(pattern: str) -> str:
    """Quote everything but the ``*`` so only the intended wildcard expands."""
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))


def split_sections(output: str, marker: str) -> dict[str, Section]:
    """The sections of the script's output. A host that stopped mid-way lacks the ``end`` section."""
    sections: dict[str, Section] = {}
    name: str | None = None
    rc: int | None = None
    body: list[str] = []

    def close() -> None:
        if name is not None:
            # The newline printed after a section (output may lack a final one) is not output.
            sections[name] = Section(rc, "\n".join(body).strip("\n"))

    for line in output.splitlines():
        if line.startswith(marker + " "):
            close()
            parts = line[len(marker) + 1 :].split()
            name = parts[0] if parts else "?"
            status = parts[1] if len(parts) > 1 else "-1"
            rc = int(status) if status.lstrip("-").isdigit() else ABSENT
            body = []
        elif name is not None:
            body.append(line)
    close()
    return sections
