"""The initiator side of probes, a long-lived process of its own: ``python -m xpdctl.kvagent.worker``.

The worker imports nixl once, prints ``XPD-READY`` on stdout, then runs one probe per line
of stdin (a ``WorkerRequest`` as JSON): a new NIXL agent reads the source's buffers, and the
``WorkerResult`` follows on stdout as one ``XPD-RESULT <json>`` line. It ends when stdin closes (the
KV agent stopped or died). Importing nixl costs seconds of CPU; a process per probe paid
it every probe interval (``xpdctl.kvagent.transfer.ProbeWorkers`` keeps one process alive instead).

A process of its own because UCX reads ``UCX_*`` variables (``UCX_PROTO_INFO``, ``UCX_TLS``,
``UCX_NET_DEVICES``) once per process (so one worker per transport setting) and prints its protocol
choices on fd 1, which the parent parses (``xpdctl.kvagent.ucxinfo``); a UCX crash also stays out of
the agent. Each probe's agent is new, so UCX selects protocols, and prints its tables, again for
every probe (checked: three probes in one process printed the same tables three times). C stdio
buffers those tables; they are flushed before the result line, so everything before a result line
belongs to that probe.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import importlib
import statistics
import sys
import time

from xpdctl.kvagent.models import Region, WorkerRequest, WorkerResult


class _Failed(Exception):
    pass


def _read(agent, handle, deadline: float) -> float:
    """Post one prepared READ, wait for it, return its duration in seconds."""
    start = time.perf_counter()
    state = agent.transfer(handle)
    # Busy polling, as vLLM does between steps: sleeping would add the scheduler's latency to the probe.
    while state == "PROC":
        if time.monotonic() > deadline:
            raise _Failed("the NIXL READ did not complete before the probe timeout")
        state = agent.check_xfer_state(handle)
    if state != "DONE":
        raise _Failed(f"the NIXL READ ended in state {state} (the peer agent may have gone away)")
    return time.perf_counter() - start


def _prepare(agent, peer: str, local, remote: Region):
    local_descs = agent.get_xfer_descs([(local.ctypes.data, local.nbytes, 0)], "DRAM")
    remote_descs = agent.get_xfer_descs([(remote.addr, remote.length, 0)], "DRAM")
    return agent.initialize_xfer("READ", local_descs, remote_descs, peer)


def _verify(buffer, region: Region, what: str) -> None:
    if hashlib.sha256(buffer.tobytes()).hexdigest() != region.sha256:
        raise _Failed(f"the {what} buffer read over NIXL does not match the source's digest (data corrupted)")


def _load_peer(agent, metadata_b64: str) -> str:
    try:
        return agent.add_remote_agent(base64.b64decode(metadata_b64))
    except Exception as exc:  # nixl raises its own error types (nixlMismatchError, ...) without a common base
        raise _Failed(
            f"NIXL refused the source agent's metadata ({type(exc).__name__}: {exc}); "
            "both hosts need the same nixl version"
        ) from exc


READY = "XPD-READY"
RESULT = "XPD-RESULT "


def _measure(request: WorkerRequest, module: str) -> WorkerResult:
    import numpy as np

    api = importlib.import_module(f"{module}._api")
    nixl_agent, nixl_agent_config = api.nixl_agent, api.nixl_agent_config

    deadline = time.monotonic() + request.timeout_s
    source = request.source
    # No progress thread: the busy polling in _read progresses UCX, and a second spinning thread
    # would only compete with it for the CPU.
    agent = nixl_agent(request.agent_name, nixl_agent_config(enable_prog_thread=False, backends=["UCX"]))
    bulk = np.zeros(source.bulk.length, dtype=np.uint8)
    small = np.zeros(source.small.length, dtype=np.uint8)
    peer = _load_peer(agent, source.metadata_b64)
    registered = agent.register_memory([(b.ctypes.data, b.nbytes, 0, "") for b in (bulk, small)], "DRAM")
    handles = []
    try:
        handles = [_prepare(agent, peer, small, source.small), _prepare(agent, peer, bulk, source.bulk)]
        small_handle, bulk_handle = handles
        # The first read also sets up the UCX endpoint (wire-up): keep it out of the latency figure.
        _read(agent, small_handle, deadline)
        _verify(small, source.small, "small")
        small_times = [_read(agent, small_handle, deadline) for _ in range(request.small_reads)]
        bulk_times = [_read(agent, bulk_handle, deadline)]
        _verify(bulk, source.bulk, "bulk")
        bulk_times += [_read(agent, bulk_handle, deadline) for _ in range(request.bulk_reads - 1)]
    finally:
        # The process outlives the probe: give back what this probe's agent holds.
        for handle in handles:
            agent.release_xfer_handle(handle)
        agent.deregister_memory(registered)
        agent.remove_remote_agent(peer)
    seconds = statistics.median(bulk_times)
    return WorkerResult(
        ok=True,
        verified=True,
        bandwidth_gbps=source.bulk.length * 8 / seconds / 1e9,
        latency_ms=statistics.median(small_times) * 1e3,
    )


def run(request: WorkerRequest, module: str = "nixl") -> WorkerResult:
    try:
        return _measure(request, module)
    except _Failed as exc:
        return WorkerResult(ok=False, error=str(exc))
    except Exception as exc:  # the process boundary: every nixl/UCX failure becomes a reported reason
        return WorkerResult(ok=False, error=f"{type(exc).__name__}: {exc}")


def serve(lines, out, flush_c_stdio, module: str = "nixl") -> None:
    importlib.import_module(f"{module}._api")  # the slow import, paid once before READY

    out.write(READY + "\n")
    out.flush()
    for line in lines:
        if not line.strip():
            continue
        result = run(WorkerRequest.model_validate_json(line), module)
        flush_c_stdio()  # UCX's tables of this probe go out before its result line
        out.write(RESULT + result.model_dump_json() + "\n")
        out.flush()


def main() -> int:
    libc = ctypes.CDLL(None)
    # argv[1]: the NIXL module to import (ProbeWorkers passes the kv-agent config's nixl_module)
    serve(sys.stdin, sys.stdout, lambda: libc.fflush(None), sys.argv[1] if len(sys.argv) > 1 else "nixl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
