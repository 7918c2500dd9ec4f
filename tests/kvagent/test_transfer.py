"""Failures of the NIXL probe itself: a real source in this process, a real worker process reading it.

Successful probes are covered by test_agents.py and test_server.py."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from xpdctl.kvagent.source import Source
from xpdctl.kvagent.transfer import run_transfer


@pytest.fixture(scope="module")
def source():
    return Source("src-host", size_mib=4)


async def test_bytes_that_do_not_match_the_digest_fail_the_probe(source):
    """The source's digest is altered, which is what the worker sees when the bytes it reads differ
    from the ones the source holds."""
    tampered = source.info.model_copy(
        update={"bulk": source.info.bulk.model_copy(update={"sha256": "0" * 64})}
    )
    result = await run_transfer("dst-host", "src-host", tampered, ucx_env={}, timeout_s=120)
    assert not result.ok and not result.verified
    assert "does not match the source's digest" in result.reason


async def test_unusable_peer_metadata_fails_with_the_nixl_error(source):
    broken = source.info.model_copy(update={"metadata_b64": "bm90IG1ldGFkYXRh"})
    result = await run_transfer("dst-host", "src-host", broken, ucx_env={}, timeout_s=120)
    assert not result.ok
    assert result.reason.startswith("NIXL transfer from src-host failed: NIXL refused the source agent's metadata")


async def test_transport_is_read_even_when_ucx_logs_to_a_file(source, tmp_path):
    log = tmp_path / "ucx.log"
    result = await run_transfer("dst-host", "src-host", source.info, ucx_env={"UCX_LOG_FILE": str(log)}, timeout_s=120)
    assert result.ok, result.reason
    assert result.transport is not None


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
    return pids


async def test_cancelled_probe_leaves_no_worker_behind(source):
    """What happens when the agent shuts down in the middle of a probe."""
    task = asyncio.create_task(run_transfer("dst-host", "src-host", source.info, ucx_env={}, timeout_s=120))
    for _ in range(600):
        if workers := _worker_children():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the probe worker process never started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


async def _freeze_worker_once(ready) -> None:
    """SIGSTOP the probe's worker process as soon as ``ready(pid)`` holds: a stand-in for a process the
    scheduler does not run (an overloaded host) or a transfer that hangs."""
    for _ in range(1200):
        for pid in _worker_children():
            if ready(pid):
                os.kill(pid, signal.SIGSTOP)
                return
        await asyncio.sleep(0.01)
    pytest.fail("the probe worker process never got to the point to freeze it at")


def _result_path(pid: int) -> Path:
    return Path((Path(f"/proc/{pid}/cmdline")).read_bytes().split(b"\0")[3].decode())


async def test_a_probe_stuck_before_the_network_says_so(source):
    """Frozen while it imports torch and nixl: the timeout is reported as never having started, which
    keep_verdict_if_slow never counts against the pair."""
    probe = asyncio.create_task(run_transfer("dst-host", "src-host", source.info, ucx_env={}, timeout_s=1, startup_s=1))
    await _freeze_worker_once(lambda pid: True)
    result = await probe
    assert (result.ok, result.timed_out, result.never_started) == (False, True, True)
    assert "did not get to the network within 2 s" in result.reason
    assert not _worker_children()


async def test_a_probe_stuck_after_it_started_is_a_timeout_of_the_transfer(source):
    probe = asyncio.create_task(run_transfer("dst-host", "src-host", source.info, ucx_env={}, timeout_s=1, startup_s=60))
    await _freeze_worker_once(lambda pid: Path(f"{_result_path(pid)}.started").exists())
    result = await probe
    assert (result.ok, result.timed_out, result.never_started) == (False, True, False)
    assert "did not finish within 61 s; the host is overloaded or the transfer hangs" in result.reason
    assert not _worker_children()
