"""Inventory problems: one line each, ``file.yaml:LINE: field.path: what is wrong; what to do``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpdctl.errors import InputError
from xpdctl.inventory.yamlsource import LineMap, Loc


@dataclass(frozen=True)
class Problem:
    loc: Loc  # where the value to change lives, e.g. ("pools", "decode", "tensor_parallel")
    message: str  # what is wrong; what to do
    line: int | None = None  # when known better than the line of loc (e.g. a duplicate key)


def field_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(file)"


def _line(lines: LineMap, problem: Problem) -> int:
    return problem.line if problem.line is not None else lines.line_of(problem.loc)


def format_problem(path: Path, lines: LineMap, problem: Problem) -> str:
    where = _line(lines, problem)
    return f"{path}:{where}: {field_path(problem.loc)}: {problem.message}"


def raise_if_any(path: Path, lines: LineMap, problems: list[Problem]) -> None:
    if not problems:
        return
    # File order reads like a review of the file; ties keep the order rules found them.
    ordered = sorted(problems, key=lambda p: _line(lines, p))
    details = [format_problem(path, lines, p) for p in ordered]
    count = len(details)
    raise InputError(
        f"{path}: inventory has {count} problem{'s' if count != 1 else ''}; fix the lines below",
        details=details,
    )
