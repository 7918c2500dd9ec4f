"""Real apt against the built test-host mirror (every repository of packages.yaml), served by aptserve on
loopback: the sources the roles write resolve, and a typo in a repository URL or suite fails with apt's
own "Failed to fetch ... 404" - what the test hosts then show inside provisioning
(tests/provision/test_testhosts.py). The mirror's URLs are moved to 127.0.0.1 here (this machine does
not resolve the vendor names to it); paths, suites and components are the fixture's."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse

import pytest

from xpdctl.testhosts import aptrepo, identity
from xpdctl.testhosts.aptserve import _Handler

pytestmark = pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb") and shutil.which("gpg")),
                                reason="needs apt-get, dpkg-deb and gpg (Debian/Ubuntu; install.sh --test)")  # fmt: skip


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    cache = tmp_path_factory.mktemp("mirror-cache")
    repo = aptrepo.ensure_repo(cache, identity.ensure_identity(cache, aptrepo.mirrored_sites()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"repo": repo.root, "scheme": "http"}))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sites = json.loads((repo.root / "sites.json").read_text())
    for site in sites:
        site["urls"] = [base + urllib.parse.urlsplit(url).path for url in site["urls"]]
    (repo.root / "sites.json").write_text(json.dumps(sites))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def _apt_update(tmp_path, base: str, lines: list[str]) -> subprocess.CompletedProcess:
    (tmp_path / "lists/partial").mkdir(parents=True)
    (tmp_path / "cache/archives/partial").mkdir(parents=True)
    (tmp_path / "sources.list").write_text("".join(f"deb [trusted=yes arch=amd64] {base}{line}\n" for line in lines))
    (tmp_path / "status").write_text("")
    options = {
        "Dir::Etc::SourceList": tmp_path / "sources.list", "Dir::Etc::SourceParts": tmp_path / "none",
        "Dir::State::Lists": tmp_path / "lists", "Dir::Cache": tmp_path / "cache", "Dir::State::status": tmp_path / "status",
        "Dir::Etc::Preferences": tmp_path / "none", "Dir::Etc::PreferencesParts": tmp_path / "none",
        "Debug::NoLocking": "1", "Acquire::Retries": "0", "APT::Architecture": "amd64",
    }  # fmt: skip
    argv = ["apt-get", *[arg for key, value in options.items() for arg in ("-o", f"{key}={value}")], "update"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_the_roles_sources_resolve(mirror, tmp_path):
    done = _apt_update(tmp_path, mirror, [
        "/ubuntu jammy main restricted universe multiverse", "/amdgpu/6.4.1/ubuntu jammy main",
        "/rocm/apt/6.4.1 jammy main", "/libnvidia-container/stable/deb/$(ARCH) /",
        "/public/repo/doca/2.10.0/ubuntu22.04/x86_64/ ./", "/linux/ubuntu jammy stable",
    ])  # fmt: skip
    assert "E:" not in done.stderr, done.stderr
    lists = {path.name for path in (tmp_path / "lists").iterdir()}
    assert any("libnvidia-container_stable_deb_amd64_Packages" in name for name in lists)
    assert any("x86%5f64_._Packages" in name for name in lists)


@pytest.mark.parametrize(
    ("line", "apt_says"),
    [
        ("/linux/ubunto jammy stable", "/linux/ubunto/dists/jammy/stable/binary-amd64/Packages  404"),
        ("/linux/ubuntu jamy stable", "/linux/ubuntu/dists/jamy/stable/binary-amd64/Packages  404"),
        ("/rocm/apt/6.4.2 jammy main", "/rocm/apt/6.4.2/dists/jammy/main/binary-amd64/Packages  404"),
    ],
)
def test_a_typo_in_a_url_or_suite_fails_with_apts_message(mirror, tmp_path, line, apt_says):
    done = _apt_update(tmp_path, mirror, [line])
    assert f"E: Failed to fetch {mirror}{apt_says}" in done.stderr, done.stderr


def test_a_component_the_repository_lacks_is_apts_warning(mirror, tmp_path):
    done = _apt_update(tmp_path, mirror, ["/linux/ubuntu jammy main"])
    assert "doesn't have the component 'main'" in done.stderr, done.stderr
