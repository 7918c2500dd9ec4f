"""Helpers of the inventory tests: the problem lines `check` prints, and the line a text is on."""

from __future__ import annotations

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory


def details(path) -> list[str]:
    """The `file:LINE: field: ...` lines loading ``path`` refuses it with."""
    with pytest.raises(InputError) as info:
        load_inventory(path)
    return info.value.details


def line_of(path, text: str) -> int:
    """The first line of ``path`` holding ``text`` (1-based, as problems cite it)."""
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)
