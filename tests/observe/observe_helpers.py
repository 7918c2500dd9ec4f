"""Helpers shared by the observe tests (a module name of its own: conftest.py is not importable reliably)."""

from __future__ import annotations


def sections_text(marker: str, sections: dict[str, tuple[str, str]]) -> str:
    """What the status script prints, for sections {name: (rc or "-", body)}."""
    return "".join(f"{marker} {name} {rc}\n{body.rstrip()}\n" for name, (rc, body) in sections.items())
