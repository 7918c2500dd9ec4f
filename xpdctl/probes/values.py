"""Numbers out of the strings vendor tools print ("143771 MiB", "34 C", "[N/A]", {"value": 5, "unit": "W"})."""

from __future__ import annotations

import re
from typing import Any

_NUMBER = re.compile(r"^\s*\[?\s*(-?\d+(?:\.\d+)?)")


def number(value: Any) -> float | None:
    """The leading number of a tool's value, or None for "N/A", "[Not Supported]", empty and the like.

    amd-smi prints either a bare number, a string with a unit, or ``{"value": V, "unit": U}``.
    """
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.match(str(value))
    return float(match.group(1)) if match else None


def integer(value: Any) -> int | None:
    found = number(value)
    return None if found is None else int(found)


def text(value: Any) -> str | None:
    """A string value, or None when the tool says it has none."""
    if value is None:
        return None
    cleaned = str(value).strip()
    if not cleaned or cleaned.strip("[]").lower() in {"n/a", "not supported", "unknown", "none"}:
        return None
    return cleaned
