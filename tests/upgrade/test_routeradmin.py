"""The upgrade's admin client against real `xpdctl router` processes in front of simulator engines.

A router on a busy host answers late: here it is frozen (SIGSTOP) past the client's timeout and thawed
while the client waits, which is what a CPU-starved router looks like from outside. Behind a virtual
address two routers serve the same engines, each with its own backend list: a second router process
on the same engines stands for the second router host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest
import yaml

from tests.ports import free_port_block
from xpdctl.errors import ExecutionError
from xpdctl.upgrade.routeradmin import RouterAdmin, RouterAdmins

TOKEN = "admin-client-test-token"


def _spawn(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "xpdctl", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on http://" in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


@pytest.fixture(scope="module")
def routers(tmp_path_factory):
    """Two routers (processes, urls) in front of one prefill and one decode engine (role -> url)."""
    procs = []
    try:
        urls = {}
        for role in ("prefill", "decode"):
            proc, urls[role] = _spawn("sim", "--role", role, "--model", "m", "--port", "0")
            procs.append(proc)
        routers = []
        for n in (1, 2):
            config = tmp_path_factory.mktemp("admin") / f"router{n}.yaml"
            config.write_text(yaml.safe_dump({
                "model": "m", "listen": {"host": "127.0.0.1", "port": free_port_block(1)}, "admin": {"token": TOKEN},
                "backends": [{"url": urls["prefill"], "pool": "prefill"}, {"url": urls["decode"], "pool": "decode"}],
            }))
            routers.append(_spawn("router", "--config", str(config)))
            procs.append(routers[-1][0])
        yield routers, urls
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def router(routers):
    (proc, url), _ = routers[0]
    return proc, url, routers[1]


def _frozen_for(proc: subprocess.Popen, seconds: float) -> threading.Thread:
    os.kill(proc.pid, signal.SIGSTOP)
    thaw = threading.Timer(seconds, os.kill, (proc.pid, signal.SIGCONT))
    thaw.start()
    return thaw


def test_a_call_the_router_answers_late_is_tried_again(router):
    proc, url, engines = router
    admin = RouterAdmin(url, TOKEN, timeout_s=1.0)
    thaw = _frozen_for(proc, 1.5)  # the first try times out, a later one is answered
    admin.drain(engines["decode"])
    thaw.join()
    assert admin.backend(engines["decode"]).draining
    admin.undrain(engines["decode"])


def test_repeating_add_and_remove_is_harmless(router):
    _, url, engines = router
    admin = RouterAdmin(url, TOKEN, timeout_s=5)
    extra = "http://127.0.0.1:9"  # nothing listens: added, never healthy
    admin.add(extra, "decode", "g1", "extra")
    admin.add(extra, "decode", "g1", "extra")
    assert admin.backend(extra) is not None
    admin.remove(extra)
    admin.remove(extra)
    assert admin.backend(extra) is None


def test_a_router_that_never_answers_is_an_error_naming_it(router):
    proc, url, _ = router
    admin = RouterAdmin(url, TOKEN, timeout_s=0.2)
    thaw = _frozen_for(proc, 5.0)
    try:
        with pytest.raises(ExecutionError, match=f"admin API at {url}/admin/backends did not answer GET in 0.2 s, 3 times"):
            admin.backends()
    finally:
        thaw.join()


def test_behind_a_vip_a_drain_add_and_remove_reach_every_router(routers):
    (_, first), (_, second) = routers[0]
    engines = routers[1]
    one, two = RouterAdmin(first, TOKEN), RouterAdmin(second, TOKEN)
    both = RouterAdmins([one, two])
    decode = engines["decode"]
    both.drain(decode)
    assert one.backend(decode).draining and two.backend(decode).draining and not both.backend(decode).serving
    both.undrain(decode)
    assert both.backend(decode).serving
    one.drain(decode)  # a router that drained it alone: to a client behind the address it is not serving
    assert not both.backend(decode).serving and both.backend(decode).draining
    both.undrain(decode)
    extra = "http://127.0.0.1:9"
    one.add(extra, "decode", "g1", "extra")  # as if the add had reached only the first router
    assert both.backend(extra).health == "absent" and two.backend(extra) is None
    both.add(extra, "decode", "g1", "extra")
    assert two.backend(extra) is not None and both.backend(extra).health == one.backend(extra).health
    both.remove(extra)
    assert one.backend(extra) is None and two.backend(extra) is None and both.backend(extra) is None
