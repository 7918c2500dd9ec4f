"""YAML loading that remembers where every value came from.

pydantic reports problems by location (``("hosts", 0, "gpu", "count")``); people fix files by line.
:func:`load_yaml` returns the plain data plus a :class:`LineMap` from every location to its line, so
each error can point at ``file.yaml:LINE``. It also rejects duplicate keys, which YAML itself
silently resolves by keeping the last one (a classic source of "my edit had no effect").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[Any, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class LineMap:
    """Line (1-based) of the value at each location; keys map to the line of the key itself."""

    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that exists (e.g. for a missing field)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


@dataclass
class YamlProblem:
    loc: Loc
    line: int
    message: str


def _construct(node: yaml.Node, loc: Loc, lines: LineMap, problems: list[YamlProblem]) -> Any:
    lines.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = _merged(node, loc, lines, problems)
        explicit: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = _construct(key_node, loc + ("<key>",), LineMap(), problems)
            if isinstance(key, (dict, list)):
                problems.append(
                    YamlProblem(loc, key_node.start_mark.line + 1, "a mapping key must be a plain value")
                )
                continue
            if key in explicit:
                problems.append(
                    YamlProblem(
                        loc + (key,),
                        key_node.start_mark.line + 1,
                        f"key {key!r} appears twice (line {lines.lines[loc + (key,)]} and here); "
                        "keep one",
                    )
                )
                continue
            explicit.add(key)
            result[key] = _construct(value_node, loc + (key,), lines, problems)
            # pydantic reports unknown keys at the key: point there, not at the value.
            lines.lines[loc + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loc + (i,), lines, problems) for i, item in enumerate(node.value)]
    return yaml.SafeLoader.construct_object(_SCALAR_LOADER, node, deep=True)


def _merged(node: yaml.MappingNode, loc: Loc, lines: LineMap, problems: list[YamlProblem]) -> dict[Any, Any]:
    """Keys brought in by ``<<: *anchor`` (e.g. hosts sharing a template); the mapping's own keys win.

    Their lines are those of the anchored mapping: that is where a wrong value has to be fixed.
    """
    result: dict[Any, Any] = {}
    own_line = lines.lines[loc]
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                problems.append(
                    YamlProblem(loc, key_node.start_mark.line + 1, "<< must name a mapping (<<: *anchor)")
                )
                continue
            for key, value in _construct(source, loc, lines, problems).items():
                result.setdefault(key, value)
    lines.lines[loc] = own_line
    return result


class _ScalarLoader(yaml.SafeLoader):
    def __init__(self) -> None:  # only its scalar constructors are used; there is no stream
        yaml.SafeLoader.__init__(self, "")


_SCALAR_LOADER = _ScalarLoader()


def load_yaml(path: Path) -> tuple[Any, LineMap, list[YamlProblem]]:
    """Parse ``path``; returns (data, line map, problems). Syntax errors raise ``yaml.YAMLError``."""
    text = path.read_text()
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = LineMap()
    problems: list[YamlProblem] = []
    if node is None:
        return None, lines, problems
    data = _construct(node, (), lines, problems)
    return data, lines, problems
