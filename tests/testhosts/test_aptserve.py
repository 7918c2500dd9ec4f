"""The mirror answers only at the URLs, suites and components of the repositories packages.yaml lists."""

from __future__ import annotations

import json

import pytest

from xpdctl.testhosts.aptserve import resolve

SITES = [
    {"name": "docker", "urls": ["https://download.docker.com/linux/ubuntu"], "suites": ["jammy"],
     "components": ["stable"], "flat": None, "key": "https://download.docker.com/linux/ubuntu/gpg",
     "debs": ["docker-ce_28.3.3-1~ubuntu.22.04~jammy_amd64.deb"]},
    {"name": "ctk", "urls": ["https://nvidia.github.io/libnvidia-container/stable/deb/amd64"], "suites": None,
     "components": None, "flat": True, "key": "https://nvidia.github.io/libnvidia-container/gpgkey",
     "debs": ["libnvidia-container1_1.17.8-1_amd64.deb"]},
]  # fmt: skip


@pytest.fixture
def root(tmp_path):
    (tmp_path / "sites.json").write_text(json.dumps(SITES))
    for rel in ("repo-key.asc", "pool/docker-ce_28.3.3-1~ubuntu.22.04~jammy_amd64.deb",
                "pool/libnvidia-container1_1.17.8-1_amd64.deb", "repos/docker/dists/jammy/InRelease",
                "repos/docker/Packages.gz", "repos/ctk/InRelease", "repos/ctk/Packages"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    return tmp_path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://download.docker.com/linux/ubuntu/dists/jammy/InRelease", "repos/docker/dists/jammy/InRelease"),
        ("https://download.docker.com/linux/ubuntu/dists/jammy/stable/binary-amd64/Packages.gz", "repos/docker/Packages.gz"),
        ("https://download.docker.com:443/linux/ubuntu/pool/docker-ce_28.3.3-1%7eubuntu.22.04%7ejammy_amd64.deb",
         "pool/docker-ce_28.3.3-1~ubuntu.22.04~jammy_amd64.deb"),
        ("https://download.docker.com/linux/ubuntu/gpg", "repo-key.asc"),
        ("https://nvidia.github.io/libnvidia-container/stable/deb/amd64/./InRelease", "repos/ctk/InRelease"),
        ("https://nvidia.github.io/libnvidia-container/stable/deb/amd64/Packages", "repos/ctk/Packages"),
        ("https://nvidia.github.io/libnvidia-container/gpgkey", "repo-key.asc"),
    ],
)
def test_the_repositories_own_urls(root, url, expected):
    parts = url.split("/", 3)
    assert resolve(root, parts[0].rstrip(":"), parts[2], "/" + parts[3]) == root / expected


@pytest.mark.parametrize(
    "url",
    [
        "https://download.docker.com/linux/ubuntu/dists/jamy/InRelease",  # a suite the repository lacks
        "https://download.docker.com/linux/ubuntu/dists/jammy/main/binary-amd64/Packages.gz",  # a component
        "https://download.docker.com/linux/ubunto/dists/jammy/InRelease",  # a path typo
        "https://download.dockr.com/linux/ubuntu/dists/jammy/InRelease",  # a host typo
        "http://download.docker.com/linux/ubuntu/dists/jammy/InRelease",  # a scheme the URL does not have
        "https://download.docker.com/linux/ubuntu/pool/libnvidia-container1_1.17.8-1_amd64.deb",  # another's deb
        "https://download.docker.com/linux/ubuntu/gpg.asc",  # not the key URL
        "https://nvidia.github.io/libnvidia-container/stable/deb/InRelease",  # $(ARCH) missing
        "https://download.docker.com/",
    ],
)
def test_anything_else_is_404(root, url):
    parts = url.split("/", 3)
    assert resolve(root, parts[0].rstrip(":"), parts[2], "/" + parts[3]) is None
