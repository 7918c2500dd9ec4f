"""Request paths of every apt source the playbooks write map onto the one repository."""

from __future__ import annotations

import pytest

from xpdctl.testhosts.aptserve import resolve


@pytest.fixture
def repo(tmp_path):
    for rel in ("Packages", "Packages.gz", "repo-key.asc", "pool/rocm_6.4.1.60401-83~22.04_amd64.deb",
                "flat/InRelease", "dists/_any/InRelease", "dists/jammy/InRelease", "dists/jammy/Release"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    return tmp_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ubuntu/dists/jammy/InRelease", "dists/jammy/InRelease"),
        ("/rocm/apt/6.4.1/dists/jammy/main/binary-amd64/Packages.gz", "Packages.gz"),
        ("/linux/ubuntu/dists/focal/InRelease", "dists/_any/InRelease"),
        ("/rocm/apt/6.4.1/pool/rocm_6.4.1.60401-83%7e22.04_amd64.deb", "pool/rocm_6.4.1.60401-83~22.04_amd64.deb"),
        ("/libnvidia-container/stable/deb/amd64/./InRelease", "flat/InRelease"),
        ("/public/repo/doca/2.10.0/ubuntu22.04/x86_64/Packages", "Packages"),
        ("/rocm/rocm.gpg.key", "repo-key.asc"),
        ("/libnvidia-container/gpgkey", "repo-key.asc"),
        ("/linux/ubuntu/gpg", "repo-key.asc"),
        ("/public/repo/doca/GPG-KEY-Mellanox.pub", "repo-key.asc"),
    ],
)
def test_vendor_paths(repo, path, expected):
    assert resolve(repo, path) == repo / expected


@pytest.mark.parametrize("path", ["/", "/index.html", "/pool/missing.deb", "/ubuntu/dists/jammy/Contents-amd64"])
def test_unknown_paths_are_404(repo, path):
    assert resolve(repo, path) is None
