"""Standalone probe, run by an engine's own interpreter (``python - < probe.py``, natively or in the image
through ``docker run -i``): prints one JSON line with what that stack really is.

It imports nothing of xpdctl (engine images do not carry it) and no NIXL module (importing one starts
UCX): packages are read from their metadata and import specs. The UCX version comes from the libucp that
NIXL loads (the one bundled in the wheel, else the system's), through ucp_get_version_string().
"""

import ctypes
import glob
import importlib.metadata
import importlib.util
import json
import os
import sys

NIXL_MODULES = ("nixl", "rixl", "nixl_rocm")  # every module name a vLLM release imports as NIXL


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
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    dist, version = _dist_version(module)
    return {"path": os.path.dirname(spec.origin or ""), "distribution": dist, "version": version}


def _ucx_version(nixl_paths):
    candidates = []
    for path in nixl_paths:
        parent = os.path.dirname(path)
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
    try:
        import vllm

        facts["vllm_version"] = vllm.__version__
    except Exception as exc:  # an interpreter without vLLM is a fact to report, not a crash
        facts["vllm_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["rocm"] = bool(getattr(torch.version, "hip", None))
    except Exception as exc:
        facts["torch_error"] = f"{type(exc).__name__}: {exc}"
    nixl = {m: _nixl(m) for m in NIXL_MODULES}
    facts["nixl"] = nixl
    facts["ucx"] = _ucx_version([n["path"] for n in nixl.values() if n])
    print(json.dumps(facts))


main()
