"""observe_targets end to end on this machine: simulator engines (xpdctl.sim, the real component the
status probes talk to), the real status script run by sh through the local-shell transport (each
"host" is this machine seen through its own root folder for files), and real ssh to a closed port."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from xpdctl.observe.cluster import observe_targets
from xpdctl.observe.drift import host_files, owned_globs
from xpdctl.observe.targets import HostTarget, ServiceTarget
from xpdctl.render import RenderedFile
from xpdctl.sim.config import Faults, SimConfig
from xpdctl.sim.server import start
from xpdctl.ssh.transport import LocalShellTransport, SshTransport

UNIT = "etc/systemd/system/xpd-t-decode-0.service"
CONFIG = "etc/xpdctl/t/decode-0.env"


@pytest.fixture
async def sims():
    running = [await start(SimConfig(role=role, model="tiny", port=0, itl_ms=50)) for role in ("prefill", "decode")]
    yield running
    for sim in running:
        await sim.stop()


def _render(host: str) -> dict[str, RenderedFile]:
    """What render would produce for one host: a unit and an env file."""
    return {
        f"hosts/{host}/{UNIT}": RenderedFile("[Service]\nExecStart=/bin/true\n", 0o644),
        f"hosts/{host}/{CONFIG}": RenderedFile("VLLM_PORT=1\n", 0o600),
    }


def _install(files: dict[str, RenderedFile], host: str, root: Path) -> None:
    prefix = f"hosts/{host}"
    for rel, rendered in files.items():
        target = root / rel[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rendered.content)
        target.chmod(rendered.mode)


def _target(name: str, files: dict[str, RenderedFile], root: Path, services: list[ServiceTarget]) -> HostTarget:
    expected = host_files(files, name)
    return HostTarget(
        name=name,
        address="127.0.0.1",
        services=services,
        expected_files=expected,
        owned_globs=owned_globs("t"),
        drift_checked=True,
        root=str(root),
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_two_hosts_engines_drift_and_load(tmp_path, sims):
    prefill, decode = sims
    in_sync, drifted = _render("p1"), _render("d1")
    _install(in_sync, "p1", tmp_path / "root-p1")
    _install(drifted, "d1", tmp_path / "root-d1")
    (tmp_path / "root-d1" / CONFIG).write_text("VLLM_PORT=2\n")  # edited by hand on the host
    (tmp_path / "root-d1" / "etc/systemd/system/xpd-t-decode-7.service").write_text("")  # left behind
    (tmp_path / "root-d1" / UNIT).unlink()
    (tmp_path / "root-p1" / CONFIG).chmod(0o644)  # a secret's file made world-readable
    targets = [
        _target(
            "p1",
            in_sync,
            tmp_path / "root-p1",
            [ServiceTarget(name="xpd-t-prefill-0", role="prefill", unit="p.service", port=prefill.port)],
        ),
        _target(
            "d1",
            drifted,
            tmp_path / "root-d1",
            [ServiceTarget(name="xpd-t-decode-0", role="decode", unit="d.service", port=decode.port)],
        ),
    ]
    async with aiohttp.ClientSession() as client:
        # One streaming request in flight on the decode engine while status looks.
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 200, "stream": True}
        async with client.post(f"{decode.url}/v1/completions", json=body) as resp:
            await resp.content.readline()
            status = await observe_targets("t", targets, LocalShellTransport())

    p1, d1 = status.hosts
    assert (p1.name, d1.name) == ("p1", "d1")
    assert p1.reachable and d1.reachable
    (engine,) = d1.engines
    assert engine.healthy and engine.models == ["tiny"]
    assert engine.requests_running == 1
    assert engine.requests_waiting == 0
    assert 0 < engine.kv_cache_usage_pct <= 100
    assert p1.engines[0].requests_running == 0
    assert p1.drift_checked
    assert [(d.path, d.state, d.expected_mode, d.actual_mode) for d in p1.drift] == [
        ("/" + CONFIG, "mode", "0600", "0644")
    ]
    assert {(d.path, d.state) for d in d1.drift} == {
        ("/" + UNIT, "missing"),
        ("/" + CONFIG, "changed"),
        ("/etc/systemd/system/xpd-t-decode-7.service", "extra"),
    }
    assert "3 files differ from render" in " ".join(p.what for p in d1.problems)
    assert "(mode)" in " ".join(p.what for p in p1.problems)


async def test_unhealthy_engine_and_unreachable_host_make_the_cluster_unhealthy(tmp_path, sims):
    prefill, _ = sims
    prefill.engine.faults.replace(Faults(health_status=503))
    engine_host = HostTarget(
        name="p1",
        address="127.0.0.1",
        services=[ServiceTarget(name="xpd-t-prefill-0", role="prefill", unit="p.service", port=prefill.port)],
    )
    gone = HostTarget(name="gone", address="127.0.0.1", ssh={"port": _closed_port()})
    local, ssh = LocalShellTransport(), SshTransport(options={"UserKnownHostsFile": "/dev/null"})

    engine_status, gone_status = await asyncio.gather(
        observe_targets("t", [engine_host], local), observe_targets("t", [gone], ssh, ssh_timeout_s=10)
    )
    (engine,) = engine_status.hosts[0].engines
    assert not engine.healthy and "HTTP 503" in engine.error
    assert not engine_status.healthy
    host = gone_status.hosts[0]
    assert not host.reachable and "refused" in host.error.lower()
    (problem,) = host.problems
    assert problem.what.startswith("unreachable over SSH") and f"-p {gone.ssh.port}" in problem.hint
    assert not gone_status.healthy


async def test_host_without_rendered_files_is_checked_for_leftovers(tmp_path):
    """A host the plan no longer gives any service still holds its old unit: drift shows it."""
    root = tmp_path / "old"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/xpd-t-decode-0.service").write_text("[Service]\n")
    (root / "etc/systemd/system/unrelated.service").write_text("[Service]\n")
    target = HostTarget(
        name="old", address="127.0.0.1", owned_globs=owned_globs("t"), drift_checked=True, root=str(root)
    )
    (host,) = (await observe_targets("t", [target], LocalShellTransport())).hosts
    assert host.drift_checked
    assert [(d.path, d.state) for d in host.drift] == [("/etc/systemd/system/xpd-t-decode-0.service", "extra")]


def test_unreadable_files_are_unknown_not_missing():
    """As a login without root sees a secret's 0600 env file: no drift claimed either way."""
    from xpdctl.observe.drift import ExpectedFile, compare, parse_hashes

    hashes = parse_hashes("UNREADABLE  /etc/xpdctl/a.env\nMISSING  /etc/xpdctl/b.env\n")
    expected = {path: ExpectedFile(sha256="0" * 64, mode=0o600) for path in ("/etc/xpdctl/a.env", "/etc/xpdctl/b.env")}
    assert [(d.path, d.state) for d in compare(expected, hashes, {}, [])] == [("/etc/xpdctl/b.env", "missing")]
