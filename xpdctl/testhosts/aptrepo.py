"""The stand-in packages (``packages.yaml``) built with dpkg-deb into a signed apt repository.

Software that is not hardware is real: a package's file can be taken from a Debian package
(``deb: NAME`` + ``from: PATH``), downloaded once into the cache with ``apt-get download`` from this
machine's Debian sources, and ``republished`` Debian packages go into the repository unchanged.

One repository answers every apt source the playbooks write: its ``Release`` lists the same
``Packages`` under every component (Ubuntu's main/restricted/..., Docker's stable) and as a flat
repository (``deb URL ./``), and :mod:`.aptserve` serves it under any path. It has no Suite or
Codename, so apt accepts it for jammy or any other distribution name.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import cache
from pathlib import Path

import yaml

from xpdctl.errors import ExecutionError
from xpdctl.testhosts.identity import Identity, gpg_home
from xpdctl.testhosts.run import run

_HERE = Path(__file__).resolve().parent
STANDINS = _HERE / "standins"
_SPEC = _HERE / "packages.yaml"
COMPONENTS = ("main", "restricted", "universe", "multiverse", "stable")
REPO_FORMAT = 3  # bumped when the build below changes the bytes it produces

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && jq -e --arg p "@PACKAGE@" '.faults.fail_install | index($p) != null' \\
    /etc/xpd-testhost/hardware.json >/dev/null 2>&1; then
  cat >&2 <<'XPD_FAULT'
@FAIL_MESSAGE@
XPD_FAULT
  exit 1
fi
"""


@cache
def spec() -> dict:
    return yaml.safe_load(_SPEC.read_text())


def mirrored_sites() -> list[str]:
    return list(spec()["mirrored_sites"])


@dataclass(frozen=True)
class Repo:
    root: Path

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    def preinstalled(self) -> list[Path]:
        names = json.loads((self.root / "preinstalled.json").read_text())
        return [self.pool / name for name in names]


def upstream_of(version: str) -> str:
    without_epoch = version.split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0] if "-" in without_epoch else without_epoch


def _fill(text: str, tokens: dict[str, str]) -> str:
    for token, value in tokens.items():
        text = text.replace(f"@{token}@", value)
    return text


def debian_debs(cache_dir: Path) -> dict[str, Path]:
    """The Debian packages ``packages.yaml`` takes files from or republishes, by name; downloaded when
    missing (the versions are this machine's candidates: ``apt-cache policy NAME``)."""
    names = sorted(spec().get("debian_packages", []))
    if not names:
        return {}
    folder = cache_dir / f"debian-{hashlib.sha256(json.dumps(names).encode()).hexdigest()[:12]}"
    if not (folder / "complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            run(["apt-get", "download", *names], cwd=folder, timeout=600)
        except ExecutionError as exc:
            raise ExecutionError(
                f"downloading Debian's {', '.join(names)} for the test hosts failed: {exc.message}; "
                "this machine needs Debian bookworm's apt sources (run `apt-get update`, then try again)",
                details=exc.details,
            ) from exc
        (folder / "complete").write_text("")
    debs = {deb.name.split("_", 1)[0]: deb for deb in folder.glob("*.deb")}
    missing = set(names) - set(debs)
    if missing:
        raise ExecutionError(f"{folder}: no .deb for {', '.join(sorted(missing))}; delete the folder and try again")
    return debs


def _extract(deb: Path, member: str, target: Path) -> None:
    """Copy one file of a Debian package (symlinks followed inside the package) to ``target``."""
    unpacked = deb.parent / "unpacked" / deb.stem
    if not unpacked.exists():
        partial = unpacked.with_name(unpacked.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        run(["dpkg-deb", "-x", str(deb), str(partial)], timeout=300)
        partial.rename(unpacked)
    source = unpacked / member.lstrip("/")
    if source.is_symlink():
        source = source.parent / os.readlink(source)
    shutil.copy(source, target)


def _stage_package(staging: Path, pkg: dict, version: str, kernel: str, debs: dict[str, Path]) -> str:
    """Lay out one package's tree under ``staging``; returns its name."""
    tokens = {"KERNEL": kernel, "VERSION": version}
    name = _fill(pkg["name"], tokens)
    tokens.update(PACKAGE=name, UPSTREAM=pkg.get("upstream") or upstream_of(version))
    conffiles = []
    for entry in pkg.get("files", []):
        target = staging / _fill(entry["path"], tokens).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if "link" in entry:
            target.symlink_to(_fill(entry["link"], tokens))
            continue
        if "deb" in entry:
            _extract(debs[entry["deb"]], entry["from"], target)
        else:
            text = (STANDINS / entry["standin"]).read_text() if "standin" in entry else _fill(entry["text"], tokens)
            target.write_text(text)
        target.chmod(int(entry.get("mode", "0644"), 8))
        if entry["path"].startswith("/etc/"):
            conffiles.append(entry["path"])
    record = staging / "usr/share/xpd-testhost/packages" / f"{name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"package": name, "version": version, "upstream": tokens["UPSTREAM"]}) + "\n")
    debian = staging / "DEBIAN"
    debian.mkdir()
    depends = ", ".join(_fill(dep, tokens) for dep in pkg.get("depends", []))
    control = [
        f"Package: {name}",
        f"Version: {version}",
        "Architecture: amd64",
        "Maintainer: xpdctl test hosts <testhosts@xpdctl.invalid>",
        "Section: misc",
        "Priority: optional",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    description = pkg.get("description", "Simulated hardware support for xpdctl test hosts.")
    control.append(f"Description: {name} (test-host package)\n {description.strip()}")
    (debian / "control").write_text("\n".join(control) + "\n")
    if conffiles:
        (debian / "conffiles").write_text("\n".join(conffiles) + "\n")
    message = _fill(pkg.get("fail_message", "@PACKAGE@: post-installation script failed"), tokens)
    postinst = _fill(POSTINST, {**tokens, "FAIL_MESSAGE": message}) + _fill(pkg.get("postinst", ""), tokens)
    (debian / "postinst").write_text(postinst.rstrip("\n") + "\n")
    (debian / "postinst").chmod(0o755)
    return name


def _build_deb(staging: Path, deb: Path) -> None:
    """Build reproducibly (fixed timestamps), so an unchanged package keeps its digest across cache
    rebuilds and the root that has it preinstalled is not rebuilt."""
    for path in [staging, *staging.rglob("*")]:
        os.utime(path, (0, 0), follow_symlinks=False)
    # Fastest gzip: the Docker packages carry ~150 MB of real binaries, which -z9 took minutes to pack.
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(staging), str(deb)],
        env={"SOURCE_DATE_EPOCH": "0"}, timeout=600)  # fmt: skip


def _packages_index(pool: Path) -> str:
    stanzas = []
    for deb in sorted(pool.glob("*.deb")):
        control = run(["dpkg-deb", "--field", str(deb)]).strip()
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: pool/{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    return "\n".join(stanzas)


def _release(files: dict[str, bytes], suite: str | None) -> str:
    lines = [f"Suite: {suite}", f"Codename: {suite}"] if suite else []
    lines += [
        "Origin: xpd-testhost",
        "Label: xpd-testhost",
        "Architectures: amd64",
        f"Components: {' '.join(COMPONENTS)}",
        f"Date: {formatdate(time.time(), usegmt=True)}",
        "SHA256:",
    ]
    for path, data in files.items():
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {path}")
    return "\n".join(lines) + "\n"


def _write_index(root: Path, identity: Identity) -> None:
    packages = _packages_index(root / "pool").encode()
    compressed = gzip.compress(packages, mtime=0)
    by_component = {f"{c}/binary-amd64/{n}": d for c in COMPONENTS for n, d in (("Packages", packages), ("Packages.gz", compressed))}
    # folder -> (files the Release lists, the distribution it names)
    layouts = {f"dists/{suite}": (by_component, suite) for suite in spec()["suites"]}
    layouts["dists/_any"] = (by_component, None)
    layouts["flat"] = ({"Packages": packages, "Packages.gz": compressed}, None)
    (root / "Packages").write_bytes(packages)
    (root / "Packages.gz").write_bytes(compressed)
    with gpg_home(identity.gnupg) as gpg:
        for layout, (files, suite) in layouts.items():
            folder = root / layout
            folder.mkdir(parents=True)
            (folder / "Release").write_text(_release(files, suite))
            run([*gpg, "--clearsign", "-o", str(folder / "InRelease"), str(folder / "Release")])
            run([*gpg, "--armor", "--detach-sign", "-o", str(folder / "Release.gpg"), str(folder / "Release")])
    shutil.copy(identity.public_key, root / "repo-key.asc")


def ensure_repo(cache_dir: Path, identity: Identity) -> Repo:
    """Build the repository for this kernel and these stand-ins when missing (call under the cache lock)."""
    kernel = os.uname().release
    sources = sorted(p for p in STANDINS.iterdir() if p.is_file())
    debs = debian_debs(cache_dir)
    digest = hashlib.sha256(
        json.dumps([REPO_FORMAT, kernel, _SPEC.read_text(), [(p.name, p.read_text()) for p in sources],
                    identity.public_key.read_text(), sorted(d.name for d in debs.values())]).encode()  # fmt: skip
    ).hexdigest()[:12]
    final = Repo(cache_dir / f"apt-{digest}")
    if (final.root / "flat" / "InRelease").exists():
        return final
    partial = cache_dir / f"apt-{digest}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "pool").mkdir(parents=True)
    preinstalled = []
    for pkg in spec()["packages"]:
        for version in pkg["versions"]:
            staging = partial / "staging"
            name = _stage_package(staging, pkg, version, kernel, debs)
            deb = partial / "pool" / f"{name}_{version.split(':', 1)[-1]}_amd64.deb"
            _build_deb(staging, deb)
            shutil.rmtree(staging)
            if pkg.get("preinstalled"):
                preinstalled.append(deb.name)
    for name in spec().get("republished", []):
        # apt-get download names files with the epoch's colon escaped (2%3a...): no epoch in the pool.
        shutil.copy(debs[name], partial / "pool" / re.sub(r"_\d+%3a", "_", debs[name].name))
    (partial / "preinstalled.json").write_text(json.dumps(preinstalled))
    _write_index(partial, identity)
    partial.rename(final.root)
    return final
