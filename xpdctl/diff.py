"""Unified diff between two renders, with secret values masked."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass

from xpdctl.render import RenderedFile

_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # added | removed | changed | mode
    diff: str


def mask_secrets(content: str, secret_names: set[str]) -> str:
    """Env-file lines of secrets show a short digest: a change is visible, the value is not."""

    def mask(line: str) -> str:
        match = _ENV_LINE.match(line)
        if match and match.group(1) in secret_names:
            digest = hashlib.sha256(match.group(2).encode()).hexdigest()[:8]
            return f"{match.group(1)}=<secret sha256:{digest}>"
        return line

    return "\n".join(mask(line) for line in content.split("\n"))


def diff_trees(
    old: dict[str, RenderedFile], new: dict[str, RenderedFile], secret_names: set[str]
) -> list[FileChange]:
    changes = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before is not None and after is not None and before == after:
            continue
        old_text = mask_secrets(before.content, secret_names) if before else ""
        new_text = mask_secrets(after.content, secret_names) if after else ""
        lines = difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"a/{path}" if before else "/dev/null",
            tofile=f"b/{path}" if after else "/dev/null",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        if before is None:
            status = "added"
        elif after is None:
            status = "removed"
        elif before.content == after.content:
            status = "mode"
            text = f"mode {path}: {before.mode:04o} -> {after.mode:04o}\n"
        else:
            status = "changed"
            if before.mode != after.mode:
                text += f"mode {path}: {before.mode:04o} -> {after.mode:04o}\n"
        changes.append(FileChange(path=path, status=status, diff=text))
    return changes
