"""Standalone probe script, run by an engine's own interpreter (``python - < probe.py``, natively, over
SSH or in the image through ``docker run -i``): prints one JSON line with what that stack really is.

A script, not a module of xpdctl: engine images do not carry xpdctl, and importing it does nothing.
It imports neither vLLM nor torch nor a NIXL module (vLLM's import pulls torch and takes seconds to
tens of seconds; a NIXL import starts UCX). Versions are read from the files the packages' own
``__version__`` comes from: ``vllm.__version__`` is ``vllm/_version.py``'s (vllm/version.py imports
it, falling back to "dev" when it is missing), torch's ``torch/version.py`` (``hip`` set on ROCm
builds). NIXL modules are found by import spec and their distribution metadata; the UCX version comes
from the libucp NIXL loads (the one bundled in the wheel, else the system's), through
ucp_get_version_string().
"""

import ctypes
import glob
import importlib.metadata
import importlib.util
import json
import os
import sys

NIXL_MODULES = ("nixl", "rixl", "nixl_rocm")  # every module name a vLLM release imports as NIXL
# Modules whose presence changes what vLLM picks: aiter moves ROCm's default attention backend.
SELECTING_MODULES = ("aiter",)


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _file_values(path, names):
    """Top-level assignments of a version file, run on their own (no package import)."""
    found = {}
    try:
        with open(path) as handle:
            exec(compile(handle.read(), path, "exec"), found)
    except OSError:
        return None
    return {n: found.get(n) for n in names}


def _dist_version(module):
    try:
        dists = importlib.metadata.packages_distributions().get(module, [])
    except Exception:
        dists = []
    for dist in dists + [module]:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def _nixl(module):
    path = _package_dir(module)
    if path is None:
        return None
    dist, version = _dist_version(module)
    return {"path": path, "distribution": dist, "version": version}


def _backends(cuda):
    """The wheels upstream nixl's meta package loads, in its order (nixl/__init__.py, _load_cuda_backend):
    the one of torch's CUDA major, else the first installed of cu13, cu12, rocm."""
    return [f"nixl_cu{cuda.split('.')[0]}"] if cuda else ["nixl_cu13", "nixl_cu12", "nixl_rocm"]


def _ucx_version(nixl_paths, cuda):
    candidates = []
    for path in nixl_paths:
        parent = os.path.dirname(path)
        for backend in _backends(cuda):
            candidates += sorted(glob.glob(os.path.join(parent, backend + ".libs", "libucp*.so*")))
        candidates += sorted(glob.glob(os.path.join(parent, "*.libs", "libucp*.so*")))
        candidates += sorted(glob.glob(os.path.join(path, "**", "libucp*.so*"), recursive=True))
    candidates += ["/opt/ucx/lib/libucp.so.0", "libucp.so.0"]
    for lib in candidates:
        try:
            ucp = ctypes.CDLL(lib)
        except OSError:
            continue
        ucp.ucp_get_version_string.restype = ctypes.c_char_p
        return {"version": ucp.ucp_get_version_string().decode(), "library": lib}
    return None


def main():
    facts = {"python": sys.version.split()[0], "vllm_version": None, "rocm": None, "torch": None}
    vllm = _package_dir("vllm")
    if vllm is None:
        facts["vllm_error"] = "no vllm package on this interpreter's path"
    else:
        version = _file_values(os.path.join(vllm, "_version.py"), ["__version__"])
        facts["vllm_version"] = version["__version__"] if version else "dev"
    torch = _package_dir("torch")
    values = _file_values(os.path.join(torch, "version.py"), ["__version__", "hip", "cuda"]) if torch else None
    if values is None:
        facts["torch_error"] = "no torch package (or its version.py) on this interpreter's path"
    else:
        facts["torch"] = values["__version__"]
        facts["rocm"] = bool(values["hip"])
    nixl = {m: _nixl(m) for m in NIXL_MODULES}
    facts["nixl"] = nixl
    facts["ucx"] = _ucx_version([n["path"] for n in nixl.values() if n], values and values["cuda"])
    facts["modules"] = {m: _package_dir(m) for m in SELECTING_MODULES}
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
