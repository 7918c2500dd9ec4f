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
# Extra vLLM arguments a built model needs to be served as intended (appended to every engine's).
VLLM_ARGS: dict[str, list[str]] = {
    "tiny-gpt-oss": tiny_gpt_oss.VLLM_ARGS,
}


def builder_vllm_args(builder: str | None) -> list[str]:
    return list(VLLM_ARGS.get(builder, [])) if builder else []


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
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two `up` runs at once must not both build: the second waits, then finds the model in place.
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return False
        tmp = path.parent / f".{path.name}.building"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a build that was killed
        try:
            build(tmp)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ExecutionError(
                f"building model {builder!r} into {path} failed: {exc}; "
                "check that transformers, tokenizers and torch import in this Python environment"
            ) from exc
        os.rename(tmp, path)
    return True
