"""Waiting for services' /health in `up`: the simulator engine stands in for a vLLM engine."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.units.state import UnitState
from xpdctl.verify.health import Progress, Target, probe, wait_healthy


def unit(name, state, log, last_exit=None):
    return UnitState(name=name, host="local", role="decode", content_hash="x", state=state, log=str(log),
                     last_exit=last_exit)


@pytest.fixture
def sim_engine(free_port_block):
    port = free_port_block(1)
    proc = subprocess.Popen([sys.executable, "-m", "xpdctl", "sim", "--role", "both", "--model", "m",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_waits_until_every_target_answers(sim_engine, tmp_path):
    out = io.StringIO()
    wait_healthy([Target(name="engine", url=sim_engine)], timeout_s=120, what="engines",
                 unit_states=lambda: {"engine": unit("engine", "running", tmp_path / "log")},
                 progress=Progress(out), poll_s=0.2)
    assert out.getvalue().splitlines()[-1].startswith("engines: all healthy in")
    assert probe(sim_engine) == "healthy"


def test_a_service_that_exits_fails_at_once_with_the_end_of_its_log(free_port_block, tmp_path):
    log = tmp_path / "decode.log"
    log.write_text("loading\nOSError: [Errno 98] Address already in use\n")
    url = f"http://127.0.0.1:{free_port_block(1)}"
    with pytest.raises(ExecutionError) as err:
        wait_healthy([Target(name="decode", url=url)], timeout_s=600, what="engines",
                     unit_states=lambda: {"decode": unit("decode", "restarting", log, "exit 1")},
                     progress=Progress(io.StringIO()))
    assert "decode exited while starting (exit 1)" in err.value.message
    assert err.value.details[-1] == "  | OSError: [Errno 98] Address already in use"


def test_timeout_names_what_is_still_starting(free_port_block, tmp_path):
    url = f"http://127.0.0.1:{free_port_block(1)}"
    assert probe(url) == "refused"
    with pytest.raises(ExecutionError, match=r"prefill not healthy after 0 s.*--timeout"):
        wait_healthy([Target(name="prefill", url=url)], timeout_s=0.3, what="engines",
                     unit_states=lambda: {"prefill": unit("prefill", "running", tmp_path / "log")},
                     progress=Progress(io.StringIO()), poll_s=0.1)
