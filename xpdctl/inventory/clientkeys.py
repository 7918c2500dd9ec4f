"""The router's client keys file: read, checked (every problem at its line of that file), hashed.

The file is a secret: it must be readable by its owner only (0600), and nothing read from it leaves
this module but each key's sha256, id and limits, and the key of id ``xpdctl``, which xpdctl's own
requests through the router (``up``'s smoke request) present. Format (docs/router.md, Client keys)::

    keys:
      - id: team-a                 # in metrics and logs; not secret
        key: "<at least 32 characters, e.g. openssl rand -hex 24>"
        requests_per_minute: 600   # each limit optional
        tokens_per_minute: 200000
        max_concurrent: 16
      - id: xpdctl                 # required: xpdctl's own requests
        key: "<another one>"
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xpdctl.inventory.problems import Problem, format_problem, problem_line, schema_problem
from xpdctl.inventory.yamlsource import load_yaml

MIN_KEY_CHARS = 32
OWN_KEY_ID = "xpdctl"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyEntry(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    key: str = Field(min_length=MIN_KEY_CHARS)
    requests_per_minute: int | None = Field(None, ge=1, strict=True)
    tokens_per_minute: int | None = Field(None, ge=1, strict=True)
    max_concurrent: int | None = Field(None, ge=1, strict=True)


class KeyFile(_Strict):
    keys: list[KeyEntry] = Field(min_length=1)


@dataclass(frozen=True)
class HashedKey:
    id: str
    sha256: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None


@dataclass
class KeysRead:
    keys: list[HashedKey]
    own_key: str | None  # the key of id xpdctl
    problems: list[str]  # formatted `keys_file:LINE: field: what to do`, or one line about the file itself


def _file_problem(path: Path, message: str) -> KeysRead:
    return KeysRead([], None, [f"{path}:1: {message}"])


def read_keys(path: Path) -> KeysRead:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return _file_problem(path, f"cannot read the client keys file: {exc.strerror}; create it (mode 0600) or fix router.auth.keys_file")
    if stat.S_IMODE(mode) & 0o077:
        return _file_problem(path, f"the client keys file is readable by others (mode {stat.S_IMODE(mode):04o}); "
                                   f"run chmod 600 {path}")
    if not os.access(path, os.R_OK):
        return _file_problem(path, "the client keys file is not readable by this user; run xpdctl as its owner")
    try:
        data, lines, yaml_problems = load_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return KeysRead([], None, [f"{path}:{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}; fix the syntax"])
    problems = [Problem(p.loc, p.message, line=p.line) for p in yaml_problems]
    try:
        parsed = KeyFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems += [schema_problem(_without_input(e), KeyFile) for e in exc.errors()]
        parsed = None
    own = None
    if parsed is not None:
        problems += _repeats(parsed)
        own = next((k.key for k in parsed.keys if k.id == OWN_KEY_ID), None)
        if own is None:
            problems.append(Problem(("keys",), f"no key with id {OWN_KEY_ID}: add one for xpdctl's own requests "
                                               "through the router (the smoke request of `up`)"))
    if problems:
        return KeysRead([], None, [format_problem(path, lines, p) for p in sorted(problems, key=lambda p: problem_line(lines, p))])
    return KeysRead([_hashed(k) for k in parsed.keys], own, [])


def _without_input(error: dict) -> dict:
    """A key must not be echoed in an error message: the message may be logged or pasted."""
    if error["loc"][-1:] == ("key",):
        return {**error, "input": "<hidden>"}
    return error


def _repeats(parsed: KeyFile) -> list[Problem]:
    problems = []
    for field, what in (("id", "an id"), ("key", "a key")):
        seen: dict[str, int] = {}
        for j, entry in enumerate(parsed.keys):
            value = getattr(entry, field)
            if value in seen:
                problems.append(Problem(("keys", j, field), f"{what} already given at keys[{seen[value]}]; give each client its own"))
            seen.setdefault(value, j)
    return problems


def _hashed(entry: KeyEntry) -> HashedKey:
    return HashedKey(
        id=entry.id, sha256=hashlib.sha256(entry.key.encode()).hexdigest(),
        requests_per_minute=entry.requests_per_minute, tokens_per_minute=entry.tokens_per_minute,
        max_concurrent=entry.max_concurrent,
    )  # fmt: skip
