"""Drift: files on a host that differ from what ``render`` produces now.

Render writes each host's files under ``DIR/hosts/<host>/`` mirroring the host's filesystem, so
``DIR/hosts/h1/etc/xpdctl/router.yaml`` is ``/etc/xpdctl/router.yaml`` on h1. The host reports a
sha256 and mode per expected path (one remote command, in the status script) and lists the files
only xpdctl writes (:func:`owned_globs`), so a unit left behind by a removed instance shows as ``extra``.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from xpdctl.plan import ETC
from xpdctl.render import HOSTS, UNIT_DIR, RenderedFile
from xpdctl.status_model import DriftEntry


class ExpectedFile(BaseModel):
    sha256: str
    mode: int  # a secret's env file must stay 0600 on the host, not only hold the right bytes


def host_files(files: dict[str, RenderedFile], host: str) -> dict[str, ExpectedFile]:
    """Absolute host path -> what render produced for ``host`` at that path.

    ``files`` is render's output (:func:`xpdctl.render.render_files` or :func:`~xpdctl.render.read_tree`).
    """
    prefix = f"{HOSTS}/{host}/"
    return {
        rel[len(prefix) - 1 :]: ExpectedFile(
            sha256=hashlib.sha256(rendered.content.encode()).hexdigest(), mode=rendered.mode
        )
        for rel, rendered in sorted(files.items())
        if rel.startswith(prefix)
    }


def owned_globs(cluster: str) -> list[str]:
    """Globs of the files a host can hold that only xpdctl writes: the cluster's units, and every file
    in xpdctl's own folder. Checked on every host, so a host that lost all its services still shows
    the units left behind."""
    return [f"/{UNIT_DIR}/xpd-{cluster}-*", f"{ETC}/*"]


def parse_hashes(text: str) -> dict[str, str | None]:
    """The script's ``hashes`` section: ``<sha256>  <path>`` or ``MISSING  <path>`` (None). A file the
    login could not read (``UNREADABLE``) is left out: its state is unknown, not missing."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and digest != "UNREADABLE":
            found[path] = None if digest == "MISSING" else digest
    return found


def parse_modes(text: str) -> dict[str, int]:
    """The script's ``modes`` section: ``stat -c '%a %n'`` lines."""
    found = {}
    for line in text.splitlines():
        mode, sep, path = line.partition(" ")
        if sep and mode.isdigit():
            found[path] = int(mode, 8)
    return found


def compare(
    expected: dict[str, ExpectedFile], hashes: dict[str, str | None], modes: dict[str, int], listing: list[str]
) -> list[DriftEntry]:
    drift = []
    for path, want in expected.items():
        if path not in hashes:
            continue  # unreadable: unknown
        have = hashes[path]
        if have is None:
            drift.append(DriftEntry(path=path, state="missing", expected_sha256=want.sha256))
            continue
        mode = modes.get(path)
        state = "changed" if have != want.sha256 else "mode" if mode is not None and mode != want.mode else None
        if state is not None:
            drift.append(
                DriftEntry(
                    path=path,
                    state=state,
                    expected_sha256=want.sha256,
                    actual_sha256=have,
                    expected_mode=f"{want.mode:04o}",
                    actual_mode=None if mode is None else f"{mode:04o}",
                )
            )
    for path in sorted(set(listing) - set(expected)):
        drift.append(DriftEntry(path=path, state="extra"))
    return drift
