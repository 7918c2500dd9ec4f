"""The NIXL probe and its worker processes: a real source in this process, real worker processes reading it.

Successful probes between agents are covered by test_agents.py and test_server.py."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from xpdctl.kvagent.source import Source
from xpdctl.kvagent.transfer import ProbeWorkers, run_transfer


@pytest.fixture(scope="module")
def source():
    return Source("src-host", size_mib=4)


@pytest.fixture
async def workers():
    async with ProbeWorkers() as pool:
        yield pool
    assert not _worker_children(), "ProbeWorkers.close() left a worker running"


def _probe(source_info, workers, **kwargs):
    kwargs.setdefault("ucx_env", {})
    kwargs.setdefault("timeout_s", 120)
    return run_transfer("dst-host", "src-host", source_info, workers=workers, **kwargs)


async def test_bytes_that_do_not_match_the_digest_fail_the_probe(source, workers):
    """The source's digest is altered, which is what the worker sees when the bytes it reads differ
    from the ones the source holds."""
    tampered = source.info.model_copy(
        update={"bulk": source.info.bulk.model_copy(update={"sha256": "0" * 64})}
    )
    result = await _probe(tampered, workers)
    assert not result.ok and not result.verified
    assert "does not match the source's digest" in result.reason


async def test_unusable_peer_metadata_fails_with_the_nixl_error(source, workers):
    broken = source.info.model_copy(update={"metadata_b64": "bm90IG1ldGFkYXRh"})
    result = await _probe(broken, workers)
    assert not result.ok
    assert result.reason.startswith("NIXL transfer from src-host failed: NIXL refused the source agent's metadata")


async def test_transport_is_read_even_when_ucx_logs_to_a_file(source, workers, tmp_path):
    log = tmp_path / "ucx.log"
    result = await _probe(source.info, workers, ucx_env={"UCX_LOG_FILE": str(log)})
    assert result.ok, result.reason
    assert result.transport is not None


async def test_probes_share_one_worker_per_ucx_environment(source, workers):
    """A probe costs a transfer, not an interpreter start: the second probe runs in the first one's
    process, and still reports the transport (each probe's new agent makes UCX print its tables)."""
    first = await _probe(source.info, workers)
    [pid] = _worker_children()
    second = await _probe(source.info, workers)
    assert first.ok and second.ok, (first.reason, second.reason)
    assert second.transport == first.transport is not None
    assert _worker_children() == [pid]
    # A failed probe is an answer too: the worker is kept.
    broken = source.info.model_copy(update={"metadata_b64": "bm90IG1ldGFkYXRh"})
    assert not (await _probe(broken, workers)).ok
    assert _worker_children() == [pid]
    # UCX reads UCX_* once per process: another setting gets a process of its own.
    tcp = await _probe(source.info, workers, ucx_env={"UCX_TLS": "tcp"})
    assert tcp.ok, tcp.reason
    assert "tcp" in tcp.transport
    assert len(_worker_children()) == 2


def _worker_children() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"xpdctl.kvagent.worker" in cmdline:
            pids.append(int(proc.name))
    return sorted(pids)


async def test_cancelled_probe_leaves_no_worker_behind(source, workers):
    """What happens when the agent shuts down in the middle of a probe."""
    task = asyncio.create_task(_probe(source.info, workers))
    for _ in range(600):
        if started := _worker_children():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the probe worker process never started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]


async def test_a_probe_stuck_before_the_network_says_so(source, workers):
    """Frozen while it imports nixl (SIGSTOP: a stand-in for a process the scheduler does not
    run on an overloaded host): the timeout is reported as never having started, which
    keep_verdict_if_slow never counts against the pair."""
    probe = asyncio.create_task(_probe(source.info, workers, timeout_s=1, startup_s=1))
    for _ in range(1200):
        if started := _worker_children():
            os.kill(started[0], signal.SIGSTOP)
            break
        await asyncio.sleep(0.01)
    result = await probe
    assert (result.ok, result.timed_out, result.never_started) == (False, True, True)
    assert "did not get to the network within 2 s" in result.reason
    assert not _worker_children()


async def test_a_worker_stuck_in_a_probe_is_replaced(source, workers):
    """A ready worker that stops answering (a hanging transfer) is a timeout of the transfer; it is
    killed, and the next probe starts a new worker that works."""
    assert (await _probe(source.info, workers)).ok
    [stuck] = _worker_children()
    os.kill(stuck, signal.SIGSTOP)
    result = await _probe(source.info, workers, timeout_s=1)
    assert (result.ok, result.timed_out, result.never_started) == (False, True, False)
    assert "did not finish within 11 s; the host is overloaded or the transfer hangs" in result.reason
    assert not Path(f"/proc/{stuck}").exists()
    again = await _probe(source.info, workers)
    assert again.ok, again.reason
    assert _worker_children() not in ([], [stuck])


async def test_a_worker_that_died_is_reported_then_replaced(source, workers):
    assert (await _probe(source.info, workers)).ok
    [dead] = _worker_children()
    os.kill(dead, signal.SIGKILL)
    await asyncio.sleep(0.2)  # reaped by the event loop's child watcher
    result = await _probe(source.info, workers)
    # Either the pool saw the exit and started a new worker, or the request met a dead pipe.
    assert result.ok or "exited with status" in result.reason, result.reason
    assert (await _probe(source.info, workers)).ok


async def test_source_and_workers_load_the_nixl_module_the_config_names():
    """vLLM on ROCm imports rixl or nixl_rocm, not nixl (xpdctl/releases/vllm.yaml); the agent loads the
    module its config names. Here ``nixl_cu13``, the wheel behind the venv's ``nixl`` shim, has the same
    ``_api``/``_bindings`` layout: a probe moves bytes through it, and a module that is not installed is
    a failure that names it."""
    import sys

    from xpdctl.errors import ExecutionError

    source = Source("src-host", size_mib=1, module="nixl_cu13")
    async with ProbeWorkers(module="nixl_cu13") as pool:
        result = await _probe(source.info, pool)
        assert result.ok and result.verified, result.reason
        (worker,) = pool._workers.values()
        assert Path(f"/proc/{worker.proc.pid}/cmdline").read_bytes().split(b"\0")[-2] == b"nixl_cu13"
    with pytest.raises(ExecutionError, match="the KV agent needs the NIXL module 'rixl' that this host's engines"):
        Source("src-host", size_mib=1, module="rixl")
    async with ProbeWorkers(module="rixl") as pool:
        result = await _probe(source.info, pool)
    assert not result.ok and "rixl" in result.reason, result.reason
    assert "nixl_cu13._bindings" in sys.modules
