"""What the inventory's free-text fields may hold, as data with its source.

vLLM's values (quantization, dtype, kv_cache_dtype, attention backends) per release come from
``vllm_values.yaml`` beside this file, read out of each release's source (:mod:`xpdctl.inventory.vllm_source`).
GPU model names come from the catalog preflight identifies GPUs with (PCI device IDs per model).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import XpdError
from xpdctl.paths import data_dir

VLLM_VALUES = Path(__file__).resolve().parent / "vllm_values.yaml"
# The GPU catalog an inventory's gpu.model is checked against. One place to change when the catalog moves.
GPU_CATALOG = ("roles/preflight/defaults/main.yml", "preflight_gpu_models")


class Accepted(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # vllm/<file>:<line> <name>
    values: tuple[str, ...]


class ReleaseValues(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantization: Accepted
    dtype: Accepted
    kv_cache_dtype: Accepted
    attention_backend: Accepted


@cache
def vllm_values() -> dict[str, ReleaseValues]:
    """Every release of ``vllm_values.yaml`` by version string."""
    try:
        data = yaml.safe_load(VLLM_VALUES.read_text())
        return {str(release): ReleaseValues.model_validate(body) for release, body in data.items()}
    except Exception as exc:  # a broken shipped file is a bug in xpdctl, not user input
        raise XpdError(f"{VLLM_VALUES}: invalid: {exc}; fix the file or reinstall xpdctl") from exc


@cache
def gpu_models() -> tuple[str, ...]:
    """GPU model names the catalog knows (compared case-insensitively, as preflight does)."""
    path = data_dir("playbooks") / GPU_CATALOG[0]
    try:
        return tuple(yaml.safe_load(path.read_text())[GPU_CATALOG[1]])
    except Exception as exc:
        raise XpdError(f"{path}: cannot read {GPU_CATALOG[1]}: {exc}; fix the file or reinstall xpdctl") from exc


def gpu_catalog_path() -> str:
    return f"{data_dir('playbooks') / GPU_CATALOG[0]} ({GPU_CATALOG[1]})"
