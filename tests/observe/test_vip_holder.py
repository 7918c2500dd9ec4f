"""Which router host holds router.vip, as `status` sees it: the real status script run by this
machine's sh (``ip -o addr show to``; this machine has 127.0.0.1 on lo and not 192.0.2.77, a
documentation address), judged for one holder, none, two, and router hosts SSH cannot reach."""

from __future__ import annotations

import socket

from xpdctl.observe.cluster import observe_targets
from xpdctl.observe.judge import judge_vip
from xpdctl.observe.summary import render_text
from xpdctl.observe.targets import HostTarget
from xpdctl.ssh.transport import LocalShellTransport, SshTransport
from xpdctl.status_model import HostStatus

HERE, ELSEWHERE = "127.0.0.1", "192.0.2.77"


async def test_the_host_that_has_the_address_is_its_holder():
    targets = [HostTarget(name="gw-1", address=HERE, vip=HERE), HostTarget(name="engine", address=HERE)]
    status = await observe_targets("t", targets, LocalShellTransport())
    assert [host.holds_vip for host in status.hosts] == [True, None]
    assert status.vip.model_dump() == {"address": HERE, "holders": ["gw-1"]}
    assert status.problems == [] and status.healthy
    assert f"virtual address {HERE}: held by gw-1" in render_text(status)


async def test_no_holder_or_two_holders_is_an_error():
    nobody = await observe_targets("t", [HostTarget(name=f"gw-{i}", address=HERE, vip=ELSEWHERE) for i in (1, 2)],
                                   LocalShellTransport())  # fmt: skip
    assert nobody.vip.holders == [] and not nobody.healthy
    (problem,) = nobody.problems
    assert (problem.severity, problem.host) == ("error", None) and "no router host holds" in problem.what
    assert "held by NO router host" in render_text(nobody)
    both = await observe_targets("t", [HostTarget(name=f"gw-{i}", address=HERE, vip=HERE) for i in (1, 2)],
                                 LocalShellTransport())  # fmt: skip
    assert both.vip.holders == ["gw-1", "gw-2"] and not both.healthy
    assert "gw-1 and gw-2 at once" in both.problems[0].what


async def test_a_router_host_ssh_cannot_reach_leaves_the_holder_unknown():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket is closed
    gone = HostTarget(name="gw-2", address=HERE, vip=HERE, ssh={"port": closed})
    status = await observe_targets("t", [gone], SshTransport(options={"UserKnownHostsFile": "/dev/null"}),
                                   ssh_timeout_s=10)  # fmt: skip
    assert status.hosts[0].holds_vip is None
    assert [p.severity for p in status.problems] == ["error", "warning"]  # unreachable; holder unknown
    assert "gw-2 did not answer SSH" in status.problems[1].what


def test_one_holder_among_reachable_hosts_is_enough():
    hosts = [HostStatus(name="gw-1", address="a", reachable=True, holds_vip=True),
             HostStatus(name="gw-2", address="b", reachable=False)]  # fmt: skip
    vip, problems = judge_vip("10.0.0.100", hosts)
    assert vip.holders == ["gw-1"] and problems == []
