"""Read the values vLLM accepts for the inventory's free-text fields out of a vLLM source tree.

It parses (never imports) the files, so any release can be read from its wheel without installing it:

    pip download vllm==0.15.0 --no-deps -d /tmp/v && unzip -q /tmp/v/vllm-*.whl 'vllm/*' -d /tmp/v
    python -m xpdctl.releases.vllm_source /tmp/v/vllm    # the release's `accepts:` block for vllm.yaml

Each list comes with the file and line it was read from, which the data file and docs/inventory.md quote.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

# field -> (file in the vllm package, Literal alias or Enum class), first file that exists wins:
# the attention registry moved from vllm/attention to vllm/v1/attention between releases.
SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "quantization": (("model_executor/layers/quantization/__init__.py", "QuantizationMethods"),),
    "dtype": (("config/model.py", "ModelDType"),),
    "kv_cache_dtype": (("config/cache.py", "CacheDType"),),
    "attention_backend": (
        ("v1/attention/backends/registry.py", "AttentionBackendEnum"),
        ("attention/backends/registry.py", "AttentionBackendEnum"),
        ("attention/backends/registry.py", "_Backend"),
    ),
}


def _literal(node: ast.AST, name: str) -> list[str] | None:
    """``name = Literal["a", "b"]`` -> its strings."""
    if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)):
        return None
    value = node.value
    if not (isinstance(value, ast.Subscript) and getattr(value.value, "id", None) == "Literal"):
        return None
    items = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
    return [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)]


def _enum_members(node: ast.AST, name: str) -> list[str] | None:
    """``class name(Enum): A = ...`` -> its member names (what ``--attention-backend`` takes)."""
    if not (isinstance(node, ast.ClassDef) and node.name == name):
        return None
    return [t.id for stmt in node.body if isinstance(stmt, ast.Assign) for t in stmt.targets
            if isinstance(t, ast.Name) and not t.id.startswith("_")]  # fmt: skip


def read_values(vllm_dir: Path) -> dict[str, dict[str, Any]]:
    """``{field: {"source": "vllm/<file>:<line> <name>", "values": [...]}}`` from a vLLM package dir."""
    found: dict[str, dict[str, Any]] = {}
    for field, candidates in SOURCES.items():
        for rel, name in candidates:
            path = vllm_dir / rel
            if not path.exists():
                continue
            for node in ast.parse(path.read_text()).body:
                values = _literal(node, name) or _enum_members(node, name)
                if values:
                    found[field] = {"source": f"vllm/{rel}:{node.lineno} {name}", "values": values}
                    break
            if field in found:
                break
        if field not in found:
            raise FileNotFoundError(f"{vllm_dir}: none of {', '.join(r + ' ' + n for r, n in candidates)} found")
    return found


def main(argv: list[str]) -> None:
    import textwrap

    import yaml

    if len(argv) != 1:
        sys.exit("usage: python -m xpdctl.releases.vllm_source VLLM_PACKAGE_DIR")
    block = yaml.safe_dump({"accepts": read_values(Path(argv[0]))}, sort_keys=False, default_flow_style=None,
                           width=104)
    sys.stdout.write(textwrap.indent(block, "    "))  # under the release's key in vllm.yaml


if __name__ == "__main__":
    main(sys.argv[1:])
