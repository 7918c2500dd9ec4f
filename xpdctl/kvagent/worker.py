"""The initiator side of a probe, run as its own process: ``python -m xpdctl.kvagent.worker RESULT``.

The worker creates the file RESULT.started once torch and nixl are imported and its agent exists:
on an overloaded host the imports alone can outlast the probe's timeout, and a probe that never got
that far says nothing about the path (see ``keep_verdict_if_slow``).

A process of its own because UCX reads ``UCX_*`` variables (``UCX_PROTO_INFO``, ``UCX_TLS``,
``UCX_NET_DEVICES``) once per process and prints its protocol choices on fd 1, which the parent
captures and parses (``xpdctl.kvagent.ucxinfo``); a UCX crash also stays out of the agent. The
request (``WorkerRequest``) comes as JSON on stdin, the ``WorkerResult`` goes to the file RESULT,
since stdout carries UCX's tables.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import sys
import time
from pathlib import Path

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
    local_descs = agent.get_xfer_descs(local)
    remote_descs = agent.get_xfer_descs([(remote.addr, remote.length, 0)], "DRAM")
    return agent.initialize_xfer("READ", local_descs, remote_descs, peer)


def _verify(tensor, region: Region, what: str) -> None:
    if hashlib.sha256(tensor.numpy().tobytes()).hexdigest() != region.sha256:
        raise _Failed(f"the {what} buffer read over NIXL does not match the source's digest (data corrupted)")


def _load_peer(agent, metadata_b64: str) -> str:
    try:
        return agent.add_remote_agent(base64.b64decode(metadata_b64))
    except Exception as exc:  # nixl raises its own error types (nixlMismatchError, ...) without a common base
        raise _Failed(
            f"NIXL refused the source agent's metadata ({type(exc).__name__}: {exc}); "
            "both hosts need the same nixl version"
        ) from exc


def started_marker(result_path: Path) -> Path:
    return result_path.with_name(result_path.name + ".started")


def _measure(request: WorkerRequest, started: Path) -> WorkerResult:
    import torch
    from nixl._api import nixl_agent, nixl_agent_config

    deadline = time.monotonic() + request.timeout_s
    source = request.source
    # No progress thread: the busy polling in _read progresses UCX, and a second spinning thread
    # would only compete with it for the CPU.
    agent = nixl_agent(request.agent_name, nixl_agent_config(enable_prog_thread=False, backends=["UCX"]))
    started.touch()
    peer = _load_peer(agent, source.metadata_b64)
    bulk = torch.zeros(source.bulk.length, dtype=torch.uint8)
    small = torch.zeros(source.small.length, dtype=torch.uint8)
    agent.register_memory([bulk, small])
    small_handle = _prepare(agent, peer, small, source.small)
    bulk_handle = _prepare(agent, peer, bulk, source.bulk)
    # The first read also sets up the UCX endpoint (wire-up): keep it out of the latency figure.
    _read(agent, small_handle, deadline)
    _verify(small, source.small, "small")
    small_times = [_read(agent, small_handle, deadline) for _ in range(request.small_reads)]
    bulk_times = [_read(agent, bulk_handle, deadline)]
    _verify(bulk, source.bulk, "bulk")
    bulk_times += [_read(agent, bulk_handle, deadline) for _ in range(request.bulk_reads - 1)]
    seconds = statistics.median(bulk_times)
    return WorkerResult(
        ok=True,
        verified=True,
        bandwidth_gbps=source.bulk.length * 8 / seconds / 1e9,
        latency_ms=statistics.median(small_times) * 1e3,
    )


def run(request: WorkerRequest, started: Path) -> WorkerResult:
    try:
        return _measure(request, started)
    except _Failed as exc:
        return WorkerResult(ok=False, error=str(exc))
    except Exception as exc:  # the process boundary: every nixl/UCX failure becomes a reported reason
        return WorkerResult(ok=False, error=f"{type(exc).__name__}: {exc}")


def main(argv: list[str]) -> int:
    result_path = Path(argv[1])
    result = run(WorkerRequest.model_validate_json(sys.stdin.read()), started_marker(result_path))
    result_path.write_text(result.model_dump_json())
    sys.stdout.flush()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
