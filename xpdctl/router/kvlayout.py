"""The KV cache groups an engine announces events for, from the model's config.json.

vLLM's hybrid KV cache manager gives each attention kind its own group, in the order the kinds first
appear among the layers (vllm/v1/core/kv_cache_utils.py:1427-1432, _get_kv_cache_groups_uniform_page_size:
layers grouped by spec in layer order), when the counts of layers of each kind are equal (GPT-OSS:
alternating sliding-window and full attention). With the manager off every layer is in one group
whose blocks are all kept, as full attention.
"""

from __future__ import annotations

import json
from pathlib import Path

from xpdctl.router.kvindex import FULL, Group

_KINDS = {"full_attention": None, "sliding_attention": "window"}


class LayoutError(ValueError):
    pass


def groups_of(model_dir: Path, hybrid_kv_cache_manager: bool) -> tuple[Group, ...]:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"cannot read {model_dir / 'config.json'}: {exc}") from exc
    layer_types = config.get("layer_types")
    if not hybrid_kv_cache_manager or not layer_types or len(set(layer_types)) == 1:
        return FULL
    kinds = list(dict.fromkeys(layer_types))
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown:
        raise LayoutError(f"layer types {unknown} in {model_dir / 'config.json'}: the router models only "
                          "full_attention and sliding_attention")
    counts = {k: layer_types.count(k) for k in kinds}
    if len(set(counts.values())) != 1:
        raise LayoutError(f"unequal layer counts per kind {counts}: vLLM splits them into groups the router "
                          "does not model")
    window = config.get("sliding_window")
    if not isinstance(window, int) or window < 1:
        raise LayoutError(f"sliding_attention layers but no sliding_window in {model_dir / 'config.json'}")
    return tuple(Group(window=window if _KINDS[k] else None) for k in kinds)
