from __future__ import annotations

import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NVIDIA_H200 = REPO / "tests" / "fixtures" / "nvidia-h200-x2"  # real captures; README.md there
AMD_HANDWRITTEN = REPO / "tests" / "fixtures" / "amd"

RDMA_SAMPLE = REPO / "tests" / "fixtures" / "rdma" / "ibv_devinfo.txt"


@pytest.fixture(scope="session")
def nvidia_text():
    return lambda name: (NVIDIA_H200 / name).read_text()


@pytest.fixture(scope="session")
def amd_text():
    return lambda name: (AMD_HANDWRITTEN / name).read_text()


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def stand_in_tools(tmp_path):
    """A folder of stand-in vendor tools that print captured output: the lowest layer at which a GPU
    host can be simulated on a machine without GPUs. nvidia-smi prints the real H200 capture; amd-smi
    prints the hand-written MI300X fixtures; ibv_devinfo the hand-written two-port sample
    (tests/fixtures/rdma)."""

    def make(*, nvidia: bool = False, amd: bool = False, rdma: bool = False) -> Path:
        """A host root whose usr/bin holds the chosen stand-ins (see LocalShellTransport)."""
        root = tmp_path / "host-root"
        folder = root / "usr" / "bin"
        folder.mkdir(parents=True, exist_ok=True)
        if nvidia:
            _tool(
                folder,
                "nvidia-smi",
                f'[ "$1" = -q ] && [ "$2" = -x ] && exec cat "{NVIDIA_H200}/nvidia-smi-q.xml"\nexit 2\n',
            )
        if amd:
            _tool(
                folder,
                "amd-smi",
                f'case "$1" in static) exec cat "{AMD_HANDWRITTEN}/amd-smi-static.json";; '
                f'metric) exec cat "{AMD_HANDWRITTEN}/amd-smi-metric.json";; esac\nexit 2\n',
            )
        if rdma:
            _tool(folder, "ibv_devinfo", f'exec cat "{RDMA_SAMPLE}"\n')
        return root

    return make
