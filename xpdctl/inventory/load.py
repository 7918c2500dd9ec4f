"""Inventory file -> validated :class:`Inventory`, with every problem reported at its line."""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from xpdctl.errors import InputError
from xpdctl.inventory.problems import Problem, raise_if_any
from xpdctl.inventory.rules import check_rules
from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.yamlsource import LineMap, Loc, load_yaml
from xpdctl.kvcompat import KvDecision, decide


@dataclass
class LoadedInventory:
    inventory: Inventory
    path: Path  # as the user named it: error lines and messages quote it
    lines: LineMap
    kv: KvDecision


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


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: Any = Inventory
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


def _schema_problem(error: dict) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"remove it (known keys: {', '.join(known)})"
        return Problem(loc, f"unknown key; {hint}")
    if kind == "missing":
        return Problem(loc, "required but missing; add it")
    got = error.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return Problem(loc, f"{error['msg']}{shown}; fix the value")


def _renamed_keys(data: dict) -> list[Problem]:
    """Keys of older inventories, refused with the rewrite to make rather than as unknown keys."""
    router = data.get("router")
    if isinstance(router, dict) and "host" in router and "hosts" not in router:
        return [Problem(("router", "host"), f"renamed to router.hosts, a list; write `hosts: [{router['host']}]`")]
    return []


def _resolve_paths(inv: Inventory, base: Path) -> Inventory:
    """Relative paths in the file are relative to the file, not to wherever xpdctl runs."""

    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded):
            return os.path.normpath(expanded)
        # normpath, not resolve(): a venv's python is a symlink that must stay the venv's.
        return os.path.normpath(os.path.join(os.path.abspath(base), expanded))

    engine = inv.engine.model_copy(update={"python": resolve(inv.engine.python)})
    model = inv.model.model_copy(update={"path": resolve(inv.model.path)})
    return inv.model_copy(update={"engine": engine, "model": model})


def load_inventory(path: Path | str) -> LoadedInventory:
    path = Path(path)
    try:
        data, lines, yaml_problems = load_yaml(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the inventory: {exc.strerror}; check the path") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: not valid YAML: {problem}; fix the syntax") from exc
    problems = [Problem(p.loc, p.message, line=p.line) for p in yaml_problems]
    if not isinstance(data, dict):
        problems.append(Problem((), "the inventory must be a mapping (cluster:, model:, hosts:, ...)"))
        raise_if_any(path, lines, problems)
    # Top-level x-* keys hold YAML anchors for hosts to merge (<<: *gpu-node), as in compose files.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    problems.extend(_renamed_keys(data))
    raise_if_any(path, lines, problems)
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems.extend(_schema_problem(e) for e in exc.errors())
        raise_if_any(path, lines, problems)
        raise  # not reached: a ValidationError always carries at least one error
    inventory = _resolve_paths(inventory, path.parent)
    problems.extend(check_rules(inventory))
    kv = decide(inventory)
    problems.extend(kv.problems)
    raise_if_any(path, lines, problems)
    return LoadedInventory(inventory=inventory, path=path, lines=lines, kv=kv)
