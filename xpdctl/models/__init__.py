"""Models xpdctl can build locally (``model.builder`` in an inventory), built on first use.

A build writes into a temporary sibling directory and renames it into place, so the model path either
holds a complete model or does not exist: an interrupted build leaves nothing that looks finished.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from xpdctl.errors import ExecutionError, InputError
from xpdctl.models import tiny_gpt_oss

BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny-gpt-oss": tiny_gpt_oss.build,
}
# Extra vLLM arguments a built model needs to be served as intended (appended to every engine's), given
# the model's folder as the engines see it.
VLLM_ARGS: dict[str, Callable[[str], list[str]]] = {
    "tiny-gpt-oss": tiny_gpt_oss.vllm_args,
}
# Files of xpdctl's a built model's folder carries beside its weights (what its VLLM_ARGS name); copied in
# again whenever they differ, so models built by an older xpdctl get them too.
CARRIED: dict[str, tuple[Path, ...]] = {
    "tiny-gpt-oss": tiny_gpt_oss.CARRIED,
}


def builder_vllm_args(builder: str | None, model_dir: str) -> list[str]:
    return VLLM_ARGS[builder](model_dir) if builder in VLLM_ARGS else []


def _carry(builder: str, path: Path) -> None:
    for source in CARRIED.get(builder, ()):
        target = path / source.name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)


def ensure_model(builder: str, path: Path) -> bool:
    """Build the model into ``path`` unless it is already there. Returns True when it built one."""
    try:
        build = BUILDERS[builder]
    except KeyError:
        raise InputError(
            f"model.builder {builder!r} is unknown; use one of: {', '.join(sorted(BUILDERS))}, "
            "or drop model.builder and point model.path at an existing model"
        ) from None
    path = path.expanduser()
    if path.exists():
        _carry(builder, path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two `up` runs at once must not both build: the second waits, then finds the model in place.
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            _carry(builder, path)
            return False
        tmp = path.parent / f".{path.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a build that was killed
        try:
            build(tmp)
            _carry(builder, tmp)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ExecutionError(
                f"building model {builder!r} into {path} failed: {exc}; "
                "check that transformers, tokenizers and torch import in this Python environment"
            ) from exc
        os.rename(tmp, path)
    return True
