"""The stand-in packages (``packages.yaml``) built with dpkg-deb into signed apt repositories.

One repository per entry of ``packages.yaml``'s ``repositories``, each with only its own packages:
``dists/<suite>/`` for each of its suites, whose ``Release`` names the suite and lists ``Packages``
under each of its components only, or one flat repository (``deb URL ./``). The debs share one pool.
``sites.json`` tells :mod:`.aptserve` which URL is which repository; it serves nothing else.

Software that is not hardware is real: a package's file can be taken from a Debian package (``deb:
NAME`` + ``from: PATH``), and a ``republish: NAME`` entry serves a Debian package unchanged; those
packages are downloaded once into the cache with ``apt-get download`` from this machine's Debian
sources (bookworm), and each entry says so in its ``source:``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import time
import urllib.parse
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
REPO_FORMAT = 4  # bumped when the build below changes the bytes it produces

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
# DKMS builds against the running kernel: without its headers the build fails, as on real hosts.
DKMS_HEADERS = """\
if [ ! -d "/lib/modules/$(uname -r)/build" ]; then
  echo "Error! Your kernel headers for kernel $(uname -r) cannot be found at /lib/modules/$(uname -r)/build or /lib/modules/$(uname -r)/source." >&2
  echo "Please install the linux-headers-$(uname -r) package or use the --kernelsourcedir option to tell DKMS where it's located." >&2
  exit 1
fi
"""


@cache
def spec() -> dict:
    return yaml.safe_load(_SPEC.read_text())


def mirrored_sites() -> list[str]:
    """Every host name a repository URL or key URL names (test hosts resolve them to the mirror)."""
    urls = [url for repo in spec()["repositories"] for url in [*repo["urls"], repo.get("key", "")] if url]
    return sorted({urllib.parse.urlsplit(url).hostname or "" for url in urls} - {""})


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


def debian_names() -> list[str]:
    """The Debian packages ``packages.yaml`` takes files from or republishes."""
    names = set()
    for repo in spec()["repositories"]:
        for pkg in repo["packages"]:
            names.update([pkg["republish"]] if "republish" in pkg else [f["deb"] for f in pkg.get("files", []) if "deb" in f])
    return sorted(names)


def debian_debs(cache_dir: Path) -> dict[str, Path]:
    """The Debian packages of :func:`debian_names`, by name; downloaded when missing (the versions are
    this machine's candidates: ``apt-cache policy NAME``)."""
    names = debian_names()
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
    """Copy one file of a Debian package (a symlink inside the package followed) to ``target``."""
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
    # Stand-ins keep their description byte for byte: a changed .deb would rebuild every cached root.
    description = (f"{name} (test-host package)\n {pkg['description'].strip()}" if "description" in pkg
                   else f"{name} (test-host stand-in)\n Simulated hardware support for xpdctl test hosts.")  # fmt: skip
    control.append(f"Description: {description}")
    (debian / "control").write_text("\n".join(control) + "\n")
    if conffiles:
        (debian / "conffiles").write_text("\n".join(conffiles) + "\n")
    message = _fill(pkg.get("fail_message", "@PACKAGE@: post-installation script failed"), tokens)
    postinst = (_fill(POSTINST, {**tokens, "FAIL_MESSAGE": message}) + (DKMS_HEADERS if pkg.get("dkms") else "")
                + _fill(pkg.get("postinst", ""), tokens))  # fmt: skip
    (debian / "postinst").write_text(postinst.rstrip("\n") + "\n")
    (debian / "postinst").chmod(0o755)
    return name


def _build_deb(staging: Path, deb: Path, fast: bool) -> None:
    """Build reproducibly (fixed timestamps), so an unchanged package keeps its digest across cache
    rebuilds and the root that has it preinstalled is not rebuilt."""
    for path in [staging, *staging.rglob("*")]:
        os.utime(path, (0, 0), follow_symlinks=False)
    # ``fast``: packages carrying Debian's binaries (the Docker ones: ~150 MB) get the fastest gzip,
    # which -z9 took minutes to pack; the small stand-ins keep the default (and so their digests).
    level = ["-z1"] if fast else []
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", *level, "--build", str(staging), str(deb)],
        env={"SOURCE_DATE_EPOCH": "0"}, timeout=600)  # fmt: skip


def _packages_index(debs: list[Path]) -> bytes:
    stanzas = []
    for deb in sorted(debs):
        control = run(["dpkg-deb", "--field", str(deb)]).strip()
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: pool/{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    return "\n".join(stanzas).encode()


def _release(files: dict[str, bytes], suite: str | None, components: list[str]) -> str:
    lines = [f"Suite: {suite}", f"Codename: {suite}"] if suite else []
    lines += [
        "Origin: xpd-testhost",
        "Label: xpd-testhost",
        "Architectures: amd64",
        *([f"Components: {' '.join(components)}"] if components else []),
        f"Date: {formatdate(time.time(), usegmt=True)}",
        "SHA256:",
    ]
    for path, data in files.items():
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {path}")
    return "\n".join(lines) + "\n"


def _write_repo(folder: Path, repo: dict, debs: list[Path], gpg: list[str]) -> None:
    """One repository: its Packages, and a signed Release per suite (or one, flat)."""
    packages = _packages_index(debs)
    compressed = gzip.compress(packages, mtime=0)
    folder.mkdir(parents=True)
    (folder / "Packages").write_bytes(packages)
    (folder / "Packages.gz").write_bytes(compressed)
    if repo.get("flat"):
        layouts = {folder: ({"Packages": packages, "Packages.gz": compressed}, None, [])}
    else:
        components = repo["components"]
        files = {f"{c}/binary-amd64/{n}": d for c in components for n, d in (("Packages", packages), ("Packages.gz", compressed))}
        layouts = {folder / "dists" / suite: (files, suite, components) for suite in repo["suites"]}
    for where, (files, suite, components) in layouts.items():
        where.mkdir(parents=True, exist_ok=True)
        (where / "Release").write_text(_release(files, suite, components))
        run([*gpg, "--clearsign", "-o", str(where / "InRelease"), str(where / "Release")])
        run([*gpg, "--armor", "--detach-sign", "-o", str(where / "Release.gpg"), str(where / "Release")])


def ensure_repo(cache_dir: Path, identity: Identity) -> Repo:
    """Build the repository for this kernel and these stand-ins when missing (call under the cache lock)."""
    kernel = os.uname().release
    sources = sorted(p for p in STANDINS.iterdir() if p.is_file())
    debian = debian_debs(cache_dir)
    digest = hashlib.sha256(
        json.dumps([REPO_FORMAT, kernel, _SPEC.read_text(), [(p.name, p.read_text()) for p in sources],
                    identity.public_key.read_text(), sorted(d.name for d in debian.values())]).encode()  # fmt: skip
    ).hexdigest()[:12]
    final = Repo(cache_dir / f"apt-{digest}")
    if (final.root / "sites.json").exists():
        return final
    partial = cache_dir / f"apt-{digest}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "pool").mkdir(parents=True)
    preinstalled, sites = [], []
    with gpg_home(identity.gnupg) as gpg:
        for repo in spec()["repositories"]:
            debs = []
            for pkg in repo["packages"]:
                if "republish" in pkg:
                    # apt-get download names files with the epoch's colon escaped (2%3a...): no epoch in the pool.
                    deb = partial / "pool" / re.sub(r"_\d+%3a", "_", debian[pkg["republish"]].name)
                    shutil.copy(debian[pkg["republish"]], deb)
                    debs.append(deb)
                    continue
                for version in pkg["versions"]:
                    staging = partial / "staging"
                    name = _stage_package(staging, pkg, version, kernel, debian)
                    deb = partial / "pool" / f"{name}_{version.split(':', 1)[-1]}_amd64.deb"
                    _build_deb(staging, deb, fast=any("deb" in f for f in pkg.get("files", [])))
                    shutil.rmtree(staging)
                    debs.append(deb)
                    if pkg.get("preinstalled"):
                        preinstalled.append(deb.name)
            _write_repo(partial / "repos" / repo["name"], repo, debs, gpg)
            sites.append({key: repo.get(key) for key in ("name", "urls", "suites", "components", "flat", "key")}
                         | {"debs": [deb.name for deb in debs]})  # fmt: skip
    (partial / "preinstalled.json").write_text(json.dumps(preinstalled))
    (partial / "sites.json").write_text(json.dumps(sites, indent=1))
    shutil.copy(identity.public_key, partial / "repo-key.asc")
    partial.rename(final.root)
    return final
