"""vLLM's NIXL handshake factors, as xpdctl knows them before deployment, compared per pair.

vLLM hashes a release-specific list of factors (``compute_nixl_compatibility_hash``; the list per release
is in :mod:`xpdctl.releases`). When vLLM's own comparison is switched off (``enforce_handshake_compat:
false``, for version strings that differ only in a local build suffix), these comparisons are the only
ones left, so a factor xpdctl cannot show equal on both sides refuses the pair. docs/kv-handshake.md
says where each value comes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.topology import pool
from xpdctl.releases import Release, public_release

# Flags in a pool's extra_args that change a factor vLLM derives from the model or its config.
_MODEL_SHAPE_FLAGS = ("--hf-overrides", "--revision")
_SPECULATIVE_FLAG = "--speculative-config"


@dataclass(frozen=True)
class FactorCheck:
    factor: str
    prefill: str
    decode: str
    ok: bool
    how: str  # where xpdctl takes the value from

    def line(self) -> str:
        values = self.prefill if self.prefill == self.decode else f"{self.prefill} vs {self.decode}"
        return f"{self.factor}: {values} ({self.how})" + ("" if self.ok else ": DIFFERS")


def _flag(args: list[str], flag: str) -> str | None:
    """The last value given to ``flag`` (``--x v`` or ``--x=v``; vLLM accepts ``_`` for ``-``)."""
    value = None
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        if name.replace("_", "-") == flag:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
    return value


def _canonical(value: str | None) -> str:
    """JSON flags compare by content, not spelling."""
    if value is None:
        return "none"
    try:
        return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return value


def side_values(inv: Inventory, role: str, vllm_version: str, attention_backend: str, kv_cache_dtype: str,
                hybrid_kv_cache_manager: str) -> dict[str, str]:
    """Every factor any known release hashes, as this side's engine will be started."""
    args = list(inv.engine.extra_args) + list(pool(inv, role).extra_args)
    model = inv.model
    shape = f"config.json of {model.weights_path} at revision {model.revision or 'unpinned'}"
    overrides = [f"{flag} {_canonical(_flag(args, flag))}" for flag in _MODEL_SHAPE_FLAGS if _flag(args, flag)]
    if overrides:
        shape += " with " + ", ".join(overrides)
    return {
        "vllm_version": vllm_version,
        "model": model.weights_path,
        "dtype": model.dtype,
        "num_kv_heads": shape,
        "head_size": shape,
        "num_hidden_layers": shape,
        "attn_backend_name": attention_backend,
        "cache_dtype": kv_cache_dtype,
        "cross_layers_blocks": "off",
        "is_hma_enabled": hybrid_kv_cache_manager,
        "speculative_config": _canonical(_flag(args, _SPECULATIVE_FLAG)),
        "transfer_mode": "pull",
    }


_HOW = {
    "vllm_version": "vllm.__version__",
    "model": "--model, model.path",
    "dtype": "--dtype, model.dtype",
    "num_kv_heads": "read by vLLM from the weights",
    "head_size": "read by vLLM from the weights",
    "num_hidden_layers": "read by vLLM from the weights",
    "attn_backend_name": "--attention-backend or the vendor default",
    "cache_dtype": "--kv-cache-dtype, model.kv_cache_dtype",
    "cross_layers_blocks": "enable_cross_layers_blocks is never set",
    "is_hma_enabled": "kv.hybrid_kv_cache_manager",
    "speculative_config": "--speculative-config in extra_args",
    "transfer_mode": "decode reads prefill's blocks",
}


def compare(release: Release, prefill: dict[str, str], decode: dict[str, str], enforced: bool) -> list[FactorCheck]:
    """One check per factor ``release`` hashes. With vLLM's check off, what xpdctl cannot know is not ok."""
    checks = []
    for factor in release.handshake.factors:
        if factor == "nixl_connector_version":
            value = f"{release.handshake.connector_version.value} (constant of vLLM {release.version})"
            checks.append(FactorCheck(factor, value, value, True, release.source("connector_version")))
            continue
        if factor not in _HOW:
            checks.append(FactorCheck(factor, "?", "?", enforced, "unknown to xpdctl: only vLLM compares it"))
            continue
        p, d = prefill[factor], decode[factor]
        ok = p == d
        how = _HOW[factor]
        if factor == "vllm_version" and not ok and public_release(p) == public_release(d):
            # What vLLM hashes differs; with its check off what matters is the release, which is equal.
            ok, how = not enforced, f"{how}; same public release {public_release(p)}, local build suffixes differ"
        if factor == "is_hma_enabled" and p == "auto" and not enforced:
            ok, how = False, "kv.hybrid_kv_cache_manager auto leaves it to each build's default"
        checks.append(FactorCheck(factor, p, d, ok, how))
    return checks
