import re
from pathlib import Path

from pydantic import BaseModel

from xpdctl.inventory.problems import _unwrap
from xpdctl.inventory.schema import Inventory

DOC = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"


def _fields(model: type[BaseModel], seen: set) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        inner = _unwrap(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
            seen.add(inner)
            names |= _fields(inner, seen)
    return names


def test_every_inventory_field_is_documented():
    documented = set()
    for code in re.findall(r"`([^`]+)`", DOC.read_text()):
        documented |= set(re.findall(r"[a-z][a-z0-9_]*", code))
    missing = _fields(Inventory, set()) - documented
    assert not missing, f"docs/inventory.md does not mention {sorted(missing)}"
