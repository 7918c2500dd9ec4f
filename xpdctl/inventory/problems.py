"""Inventory problems: one line each, ``file.yaml:LINE: field.path: what is wrong; what to do``."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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


def problem_line(lines: LineMap, problem: Problem) -> int:
    return problem.line if problem.line is not None else lines.line_of(problem.loc)


def format_problem(path: Path, lines: LineMap, problem: Problem) -> str:
    where = problem_line(lines, problem)
    return f"{path}:{where}: {field_path(problem.loc)}: {problem.message}"


def _unwrap(annotation: Any) -> Any:
    """The model class inside Optional[...] / list[...] / dict[str, ...], if any."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    if origin in (list, tuple, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    return annotation


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def schema_problem(error: dict, root: type[BaseModel]) -> Problem:
    """A pydantic error of a ``root`` document as a Problem with advice."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"remove it (known keys: {', '.join(known)})"
        return Problem(loc, f"unknown key; {hint}")
    if kind == "missing":
        model = _model_at(root, loc[:-1])
        info = model.model_fields.get(str(loc[-1])) if model else None
        return Problem(loc, f"required but missing; {info.description if info and info.description else 'add it'}")
    got = error.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return Problem(loc, f"{error['msg']}{shown}; fix the value")


def raise_if_any(path: Path, lines: LineMap, problems: list[Problem], elsewhere: list[str] = ()) -> None:
    """``elsewhere``: problems already formatted, in files the inventory names (e.g. the client keys)."""
    if not problems and not elsewhere:
        return
    # File order reads like a review of the file; ties keep the order rules found them.
    ordered = sorted(problems, key=lambda p: problem_line(lines, p))
    details = [format_problem(path, lines, p) for p in ordered] + list(elsewhere)
    count = len(details)
    raise InputError(
        f"{path}: inventory has {count} problem{'s' if count != 1 else ''}; fix the lines below",
        details=details,
    )
