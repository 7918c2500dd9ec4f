"""A second Python environment layered on the test venv whose vLLM reports another version string.

Its own site-packages comes first and then the test venv's (``site.addsitedir`` from a .pth file); its
``vllm`` package is the test venv's, every entry symlinked, except ``vllm/_version.py``, which says
``0.32.0+rocm700``: the same code with a ROCm-style local build suffix, as between two vendors' builds.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

SUFFIXED = "0.32.0+rocm700"


def layered_venv(root: Path) -> tuple[Path, Path]:
    """A venv that sees this one's packages after its own: (its interpreter, its own site-packages)."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(root)],
                   check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    (site / "xpd_layer.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    return python, site


def layered_env(root: Path, version: str = SUFFIXED) -> Path:
    """A venv whose vllm is this one's with another version string; returns its interpreter."""
    python, site = layered_venv(root)
    ours = Path(sysconfig.get_paths()["purelib"])
    vllm = site / "vllm"
    vllm.mkdir()
    for entry in (ours / "vllm").iterdir():
        if entry.name not in ("_version.py", "__pycache__"):
            (vllm / entry.name).symlink_to(entry)
    parts = tuple(int(p) if p.isdigit() else p for p in version.replace("+", ".").split("."))
    (vllm / "_version.py").write_text(
        f'__version__ = version = "{version}"\n__version_tuple__ = version_tuple = {parts!r}\n'
        "__commit_id__ = commit_id = None\n"
    )
    return python


def nixl_env(root: Path, version: str) -> Path:
    """A venv layered on this one whose NIXL is upstream ``version`` from PyPI; returns its interpreter.

    Only the NIXL wheels go into its own site-packages (``--no-deps``: everything else, vLLM included, is
    this venv's). Without CUDA the ``nixl`` shim loads ``nixl_cu13`` (nixl/__init__.py, ``_load_cuda_backend``).
    """
    python, site = layered_venv(root)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    f"nixl=={version}", f"nixl-cu13=={version}"], check=True, timeout=600)
    return python
