"""NIXL interop across releases (soak): upstream nixl 1.5.1 (the test venv) and 1.5.0 (from PyPI, in a
venv layered on the test venv, so everything else is the same), each as source and as reader, through
benchmarks/nixl_interop.py: the KV agent's real NIXL READ over UCX on this machine. Its exit status says
whether every cell equals xpdctl/releases/nixl_interop.yaml, which this run keeps honest.

Soak: it installs ~60 MB from PyPI and starts eight NIXL processes (torch imports), 2-4 min here.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.vllm_tier.layered_env import nixl_env
from xpdctl.releases import nixl_interop

pytestmark = pytest.mark.soak
OTHER = "1.5.0"
REPO = Path(__file__).resolve().parents[2]


def test_the_recorded_matrix_is_what_nixl_151_and_150_do(tmp_path):
    python = nixl_env(tmp_path / f"nixl-{OTHER}", OTHER)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "nixl_interop.py"), "--env",
                           f"a={sys.executable}", "--env", f"b={python}"], capture_output=True, text=True,
                          timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    versions = {"nixl 1.5.1", f"nixl {OTHER}"}
    assert {(s, r) for s in versions for r in versions} <= set(nixl_interop().results("nixl-api")), done.stdout
    assert "not recorded" not in done.stdout
