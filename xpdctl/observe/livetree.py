"""The files xpdctl owns as they are on the hosts, in render's tree shape, for ``plan``'s live form.

:func:`live_tree` returns ``{"hosts/<host>/<path>": RenderedFile}`` like
:func:`xpdctl.render.read_tree` (without ``manifest.json``, which no host has), so
``diff_trees(live, render_files(plan), secrets)`` is the diff between the hosts and the plan: a
file render would write that a host lacks shows as added, a leftover unit as removed. One SSH round
trip per host, all hosts at once; file contents travel base64-encoded so every byte survives. That
includes env files holding secrets (over SSH, into memory only): show them through
:func:`xpdctl.diff.diff_trees`, which masks secret values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import shlex
from dataclasses import dataclass, field

from xpdctl.inventory.load import LoadedInventory
from xpdctl.observe.targets import HostTarget, targets_from
from xpdctl.render import HOSTS, RenderedFile
from xpdctl.ssh.sections import new_marker, quote_glob
from xpdctl.ssh.transport import Transport, cluster_ssh


@dataclass
class LiveTree:
    files: dict[str, RenderedFile] = field(default_factory=dict)
    # Hosts that could not be read, with why: their files are absent from ``files``, not deleted.
    unreachable: dict[str, str] = field(default_factory=dict)


def fetch_script(marker: str, paths: list[str], globs: list[str]) -> str:
    words = " ".join([shlex.quote(path) for path in paths] + [quote_glob(pattern) for pattern in globs])
    return (
        f"M='{marker}'\n"
        f"for f in {words}; do\n"
        '  [ -f "$f" ] || continue\n'
        '  printf \'%s %s %s\\n\' "$M" "$(stat -c %a "$f")" "$f"\n'
        "  base64 -w0 <\"$f\"; printf '\\n'\n"
        "done\n"
        "printf '%s end\\n' \"$M\"\n"
    )


def parse_fetch(output: str, marker: str, root: str = "") -> dict[str, RenderedFile] | None:
    """Host path -> file; None when the output was cut short (no ``end`` line)."""
    found: dict[str, RenderedFile] = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line == f"{marker} end":
            return found
        if not line.startswith(marker + " "):
            continue
        mode, _, path = line[len(marker) + 1 :].partition(" ")
        body = lines[index + 1] if index + 1 < len(lines) else ""
        try:
            content = base64.b64decode(body, validate=True).decode(errors="replace")
        except binascii.Error:
            return None
        found[path[len(root) :]] = RenderedFile(content, int(mode, 8))
    return None


async def _fetch(
    target: HostTarget, transport: Transport, timeout_s: float
) -> tuple[dict[str, RenderedFile] | None, str]:
    marker = new_marker()
    script = fetch_script(
        marker,
        [target.root + path for path in target.expected_files],
        [target.root + pattern for pattern in target.owned_globs],
    )
    result = await transport.run(target, script, timeout_s)
    files = parse_fetch(result.stdout, marker, target.root)
    if files is None:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.rc}"
        return None, reason if result.rc is not None else f"no answer within {timeout_s:g} s"
    return files, ""


async def fetch_targets(targets: list[HostTarget], transport: Transport, *, timeout_s: float = 20.0) -> LiveTree:
    results = await asyncio.gather(*(_fetch(target, transport, timeout_s) for target in targets))
    tree = LiveTree()
    for target, (files, reason) in zip(targets, results):
        if files is None:
            tree.unreachable[target.name] = reason
            continue
        for path, rendered in files.items():
            tree.files[f"{HOSTS}/{target.name}{path}"] = rendered
    tree.files = dict(sorted(tree.files.items()))
    return tree


def live_tree(inventory: LoadedInventory, *, transport: Transport | None = None, timeout_s: float = 20.0) -> LiveTree:
    """What the hosts of ``inventory`` hold of the files render produces for them now (and leftovers)."""
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files

    cluster, targets = targets_from(inventory.inventory, render_files(build_plan(inventory, os.environ)))
    return asyncio.run(fetch_targets(targets, transport or cluster_ssh(cluster, record=False), timeout_s=timeout_s))
