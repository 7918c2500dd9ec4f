"""What the inventory's free-text fields may hold, as data with its source.

vLLM's values (quantization, dtype, kv_cache_dtype, attention backends) per release come from
``vllm_values.yaml`` beside this file, read out of each release's source (:mod:`xpdctl.inventory.vllm_source`).
GPU models are checked against the one GPU catalog (:mod:`xpdctl.gpu_catalog`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import XpdError
from xpdctl.paths import data_dir

VLLM_VALUES = Path(__file__).resolve().parent / "vllm_values.yaml"


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
