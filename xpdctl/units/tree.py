"""Edits of a rendered tree (``render``'s files: ``manifest.json`` + ``hosts/<host>/...``), one service at a time.

During a rollout the cluster's deployed tree is a mix: upgraded services carry the target's files,
the others still carry the files they run with; a router handoff (deploy/handoff.py) adds a stand-in
router for a while. These functions move one service's unit, env file and manifest entry between
trees; shared files (router.yaml, kv-agent.yaml) are left as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xpdctl.errors import ExecutionError
from xpdctl.render import MANIFEST, RenderedFile, read_tree

Files = dict[str, RenderedFile]


def manifest_of(files: Files) -> dict:
    return json.loads(files[MANIFEST].content)


def _with_manifest(files: Files, manifest: dict) -> Files:
    out = dict(files)
    out[MANIFEST] = RenderedFile(json.dumps(manifest, indent=2, sort_keys=True) + "\n", files[MANIFEST].mode)
    return out


def find_service(manifest: dict, name: str, host: str | None = None) -> tuple[str, dict] | None:
    """(host, manifest entry) of the service called ``name`` (on ``host``: a router's or KV agent's name
    recurs on each of its hosts)."""
    for where, entry in manifest["hosts"].items():
        for service in entry["services"]:
            if service["name"] == name and host in (None, where):
                return where, service
    return None


def engines(manifest: dict, role: str) -> list[tuple[str, dict]]:
    return [(h, s) for h, e in manifest["hosts"].items() for s in e["services"] if s["role"] == role]


def _own_files(entry: dict) -> list[str]:
    return [entry["unit"], entry["env_file"]]


def copy_service(into: Files, source: Files, name: str, host: str | None = None) -> Files:
    """``into`` with service ``name``'s files and manifest entry (the one on ``host``, if given) taken from
    ``source`` (in its place, if any)."""
    found = find_service(manifest_of(source), name, host)
    if found is None:
        raise ExecutionError(f"service {name} is not in the render it is taken from; render the cluster again "
                             "(a rollout: start the upgrade again)")
    host, entry = found
    before = find_service(manifest_of(into), name, host)
    out = {rel: f for rel, f in into.items() if before is None or rel not in _own_files(before[1])}
    for rel in _own_files(entry):
        out[rel] = source[rel]
    manifest = manifest_of(into)
    address = manifest_of(source)["hosts"][host]["address"]
    services = manifest["hosts"].setdefault(host, {"address": address, "services": []})["services"]
    index = next((i for i, s in enumerate(services) if s["name"] == name), None)
    if index is None:
        services.append(entry)
    else:
        services[index] = entry
    return _with_manifest(out, manifest)


def without_service(files: Files, name: str) -> Files:
    manifest = manifest_of(files)
    found = find_service(manifest, name)
    if found is None:
        return dict(files)
    host, entry = found
    out = {rel: f for rel, f in files.items() if rel not in _own_files(entry)}
    manifest["hosts"][host]["services"] = [s for s in manifest["hosts"][host]["services"] if s["name"] != name]
    return _with_manifest(out, manifest)


def _replace(directory: Path, rel: str, rendered: RenderedFile) -> None:
    # The temporary file lies outside what render owns, so a leftover one is never taken for a unit.
    tmp = directory / f".upgrade-{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, rendered.mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(rendered.content)
    os.chmod(tmp, rendered.mode)
    path = directory / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)


def write_deployed(files: Files, directory: Path) -> None:
    """Make ``directory`` hold ``files``, safe against being killed at any point.

    Unlike ``render.write_tree`` it rewrites only what changed, each file atomically, the manifest
    after the files it names and removals last: an upgrade stopped mid-write leaves a tree whose
    every file is whole and whose manifest names only files that exist, and unchanged units keep
    their content hash (a half-written one would restart a serving service).
    """
    current = read_tree(directory)
    for rel, rendered in files.items():
        if rel != MANIFEST and current.get(rel) != rendered:
            _replace(directory, rel, rendered)
    if current.get(MANIFEST) != files[MANIFEST]:
        _replace(directory, MANIFEST, files[MANIFEST])
    for rel in current:
        if rel not in files:
            (directory / rel).unlink()
