"""Fixtures shared across test folders. Each section says which part of xpdctl it serves."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# --- inventories (xpdctl/inventory, kvcompat, plan, render) -------------------------------------

_LAB = yaml.safe_load((REPO / "inventory" / "lab.yaml").read_text())


@pytest.fixture
def lab_data() -> dict:
    """inventory/lab.yaml as a dict, free to mutate (H100 prefill -> MI300X decode)."""
    return copy.deepcopy(_LAB)


@pytest.fixture
def write_inventory(tmp_path):
    """write_inventory(data: dict | str) -> path of an inventory file in tmp_path."""

    def write(data, name: str = "inventory.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write
