from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NVIDIA_H200 = REPO / "tests" / "fixtures" / "nvidia-h200-x2"  # real captures; README.md there
AMD_HANDWRITTEN = REPO / "tests" / "fixtures" / "amd"


@pytest.fixture(scope="session")
def nvidia_fixture():
    return lambda name: (NVIDIA_H200 / name).read_text()


@pytest.fixture(scope="session")
def amd_fixture():
    return lambda name: (AMD_HANDWRITTEN / name).read_text()
