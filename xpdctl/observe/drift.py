"""Drift: files on a host that differ from what ``render`` produces now.

Render writes each host's files under ``DIR/hosts/<host>/`` mirroring the host's filesystem, so
``DIR/hosts/h1/etc/xpdctl/router.yaml`` is ``/etc/xpdctl/router.yaml`` on h1. The host reports a
sha256 per expected path (one remote command, in the status script) and lists the files matching
the cluster's unit-name pattern, so a unit left behind by a removed instance shows as ``extra``.
"""

from __future__ import annotations

import hashlib
import posixpath

from xpdctl.render import HOSTS, RenderedFile
from xpdctl.status_model import DriftEntry


def host_files(files: dict[str, RenderedFile], host: str) -> dict[str, str]:
    """Absolute host path -> sha256 of every file render produced for ``host``.

    ``files`` is render's output (:func:`xpdctl.render.render_files` or :func:`~xpdctl.render.read_tree`).
    """
    prefix = f"{HOSTS}/{host}/"
    return {
        rel[len(prefix) - 1 :]: hashlib.sha256(rendered.content.encode()).hexdigest()
        for rel, rendered in sorted(files.items())
        if rel.startswith(prefix)
    }


def owned_globs(paths: list[str], cluster: str) -> list[str]:
    """Globs matching files xpdctl names after the cluster, in every folder where render puts one."""
    prefix = f"xpd-{cluster}-"
    folders = sorted({posixpath.dirname(path) for path in paths if posixpath.basename(path).startswith(prefix)})
    return [f"{folder}/{prefix}*" for folder in folders]


def parse_hashes(text: str) -> dict[str, str | None]:
    """The script's ``hashes`` section: ``<sha256>  <path>`` or ``MISSING  <path>``."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if not sep:
            continue
        found[path] = None if digest == "MISSING" else digest
    return found


def compare(expected: dict[str, str], hashes: dict[str, str | None], listing: list[str]) -> list[DriftEntry]:
    drift = []
    for path, want in expected.items():
        have = hashes.get(path)
        if have is None:
            drift.append(DriftEntry(path=path, state="missing", expected_sha256=want))
        elif have != want:
            drift.append(DriftEntry(path=path, state="changed", expected_sha256=want, actual_sha256=have))
    for path in sorted(set(listing) - set(expected)):
        drift.append(DriftEntry(path=path, state="extra"))
    return drift
