"""The GPU catalog (playbooks/vars/gpu_catalog.yml): the one list of GPU models xpdctl knows.

The roles read the same file with ``include_vars``; this module is how xpdctl's Python reads it
(the inventory check, the test hosts' simulated hardware, the performance model). It lives under
playbooks/ so the roles need nothing of xpdctl to read it.
"""

from __future__ import annotations

import re
from functools import cache

import yaml

from xpdctl.errors import InputError
from xpdctl.paths import data_dir

KEY = "xpd_gpu_catalog"


def catalog_path():
    return data_dir("playbooks") / "vars" / "gpu_catalog.yml"


@cache
def gpu_catalog() -> dict[str, dict]:
    """Model name -> its entry (vendor, aliases, pci_devices, ..., perf, sources)."""
    path = catalog_path()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the GPU catalog: {exc}") from exc
    return data[KEY]


def match_key(text: str) -> str:
    """What names are compared by: case, spaces, dashes and underscores ignored."""
    return re.sub(r"[\s_\-]+", "", text).lower()


def find_gpu(model: str) -> str | None:
    """The catalog name ``model`` (a name or an alias, any case and punctuation) stands for."""
    wanted = match_key(model)
    for name, entry in gpu_catalog().items():
        if wanted in {match_key(name), *map(match_key, entry.get("aliases", []))}:
            return name
    return None


def models_of(vendor: str) -> list[str]:
    return [name for name, entry in gpu_catalog().items() if entry["vendor"] == vendor]


def catalog_vendors() -> set[str]:
    return {entry["vendor"] for entry in gpu_catalog().values()}
