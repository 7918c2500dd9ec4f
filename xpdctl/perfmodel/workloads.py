"""Workloads as people write them: ``isl=8K,osl=1024,concurrency=32[,rate=8]``."""

from __future__ import annotations

from xpdctl.errors import InputError
from xpdctl.perfmodel.queueing import Workload

_KEYS = {"isl": "isl", "osl": "osl", "concurrency": "concurrency", "c": "concurrency", "rate": "request_rate",
         "request_rate": "request_rate"}


def parse_count(text: str) -> int:
    """``1024``, ``1K`` or ``1k`` (x1024): the report writes sequence lengths both ways."""
    t = text.strip().lower()
    try:
        if t.endswith("k"):
            return int(float(t[:-1]) * 1024)
        return int(t)
    except ValueError:
        raise InputError(f"{text!r} is not a count; write e.g. 1024 or 8K") from None


def parse_counts(text: str) -> list[int]:
    values = [parse_count(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise InputError(f"{text!r}: give positive counts separated by commas, e.g. 1,4,8,16,32")
    return values


def parse_workload(text: str) -> Workload:
    fields: dict[str, object] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS:
            raise InputError(f"workload {text!r}: {part!r} is not KEY=VALUE with KEY one of isl, osl, concurrency, rate; "
                             "write e.g. isl=8192,osl=1024,concurrency=32")
        if _KEYS[key] == "request_rate":
            fields["request_rate"] = None if value.strip().lower() in ("inf", "none") else float(value)
        else:
            fields[_KEYS[key]] = parse_count(value)
    missing = {"isl", "osl", "concurrency"} - set(fields)
    if missing:
        raise InputError(f"workload {text!r}: missing {', '.join(sorted(missing))}; write e.g. isl=8192,osl=1024,concurrency=32")
    try:
        return Workload(**fields)
    except ValueError as exc:
        raise InputError(f"workload {text!r}: {exc}") from exc
