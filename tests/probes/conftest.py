from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Real captures live in shared/ beside the clone (CI copies it there too); a missing directory is a
# broken checkout, so the tests fail instead of skipping.
NVIDIA_H200 = REPO.parent / "shared" / "fixtures" / "nvidia-h200-x2"
AMD_HANDWRITTEN = REPO / "tests" / "fixtures" / "amd"


@pytest.fixture(scope="session")
def nvidia_fixture():
    assert NVIDIA_H200.is_dir(), f"{NVIDIA_H200} is missing: shared/fixtures must sit beside the repository"
    return lambda name: (NVIDIA_H200 / name).read_text()


@pytest.fixture(scope="session")
def amd_fixture():
    return lambda name: (AMD_HANDWRITTEN / name).read_text()
