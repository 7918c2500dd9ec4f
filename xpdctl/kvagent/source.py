"""The source side of a probe: a NIXL agent offering two registered host-memory buffers.

Peers read them (NIXL READ, like a vLLM decode pulling KV from its prefill) and check the bytes
against the digests published with the metadata. ``nixl`` (and ``numpy``, which nixl requires) are
imported here only, so the rest of xpdctl works without them. Buffers are numpy arrays, not torch
tensors: nixl needs no torch (nixl_meta_utils.detect_cuda_major tries torch only when installed), and
the xpdctl image is ~1 GB smaller without it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import os
import logging
import secrets
import sys

from xpdctl.errors import ExecutionError
from xpdctl.kvagent.models import Region, SourceInfo

SMALL_BYTES = 4096


def _region(buffer) -> Region:
    digest = hashlib.sha256(buffer.tobytes()).hexdigest()
    return Region(addr=buffer.ctypes.data, length=buffer.nbytes, sha256=digest)


# Progress-thread poll timeout in microseconds. Work wakes the thread at once; the timeout only bounds
# how long it sleeps when there is none.
_PROGRESS_POLL_US = 100_000


def _idle_friendly_agent(bindings, name: str, module: str):
    """A NIXL agent with the UCX backend whose progress thread sleeps while there is no work.

    ``nixl_agent()`` fixes the progress thread's delay at 0, so the thread spins a core for the
    agent's whole life and, on a small host, starves the transfers it serves. Measured here
    (nixl 1.5.1, TCP): 4 KiB reads took 93 ms from a spinning source against 0.024 ms from this one,
    and this one used no CPU while idle. So the source is built from nixl's bindings directly.
    """
    config = bindings.nixlAgentConfig()
    config.useProgThread = True
    config.useListenThread = False  # metadata travels over the agent's HTTP API instead
    # What nixl_agent() picks without a listener thread: after construction only UCX's own progress
    # thread touches the agent.
    config.syncMode = bindings.NIXL_THREAD_SYNC_NONE
    config.pthrDelay = _PROGRESS_POLL_US
    config.captureTelemetry = False
    agent = bindings.nixlAgent(name, config)
    if "UCX" not in agent.getAvailPlugins():
        raise ExecutionError(f"NIXL has no UCX plugin here; reinstall the '{module}' package")
    return agent, agent.createBackend("UCX", {})


class Source:
    """Owns the NIXL agent and buffers; keep the object alive as long as peers may read them."""

    def __init__(self, host: str, size_mib: int, module: str = "nixl"):
        """``module``: the NIXL package to load (``nixl``; ``rixl`` or ``nixl_rocm`` where the engines'
        vLLM imports those, kv-agent config ``nixl_module``)."""
        try:
            bindings = importlib.import_module(f"{module}._bindings")
            import numpy as np
        except ImportError as exc:
            raise ExecutionError(
                f"the KV agent needs the NIXL module '{module}' that this host's engines import ({exc}); "
                "run the agent with the engines' interpreter or image, which has it"
            ) from exc
        # nixl logs to stdout by default, which would corrupt `-o json` output of the caller.
        for handler in logging.getLogger(module).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)
        name = f"xpd-kvagent-src-{host}-{os.getpid()}-{secrets.token_hex(4)}"
        self._agent, backend = _idle_friendly_agent(bindings, name, module)
        # Random contents, so a transfer that moved nothing or the wrong bytes cannot match the digest.
        generator = np.random.default_rng(secrets.randbits(63))
        self._bulk = generator.integers(0, 256, size_mib * 1024 * 1024, dtype=np.uint8)
        self._small = generator.integers(0, 256, SMALL_BYTES, dtype=np.uint8)
        regions = [(b.ctypes.data, b.nbytes, 0, "") for b in (self._bulk, self._small)]
        self._agent.registerMem(bindings.nixlRegDList(bindings.DRAM_SEG, regions), [backend])
        self.info = SourceInfo(
            agent=name,
            metadata_b64=base64.b64encode(self._agent.getLocalMD()).decode(),
            bulk=_region(self._bulk),
            small=_region(self._small),
        )


class LazySource:
    """This host's source, created on first use: importing nixl takes seconds."""

    def __init__(self, host: str, size_mib: int, module: str = "nixl"):
        self._host = host
        self._size_mib = size_mib
        self._module = module
        self._source: Source | None = None
        self._lock = asyncio.Lock()

    async def info(self) -> SourceInfo:
        async with self._lock:
            if self._source is None:
                loop = asyncio.get_running_loop()
                self._source = await loop.run_in_executor(None, Source, self._host, self._size_mib, self._module)
        return self._source.info
