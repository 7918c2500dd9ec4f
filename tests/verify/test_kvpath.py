"""`up`'s KV-path check against a real KV agent (`xpdctl kv-agent`) on loopback."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import yaml

from xpdctl.errors import UnhealthyError
from xpdctl.verify.health import Progress
from xpdctl.verify.kvpath import agent_pairs, wait_kv_paths


@pytest.fixture
def agent_with_a_dead_prefill(tmp_path, free_port_block):
    """An agent whose one pair names a prefill side channel nothing listens on, with no start-up grace:
    the agent reports the pair broken, as it would after a prefill engine died."""
    base = free_port_block(2)
    config = {
        "host": "local", "address": "127.0.0.1", "listen_host": "127.0.0.1", "port": base,
        "startup_grace_s": 0, "check_interval_s": 0.5, "probe_size_mib": 1,
        "pairs": [{
            "prefill": "p0", "decode": "d0", "prefill_host": "local", "decode_host": "local",
            "prefill_url": "http://127.0.0.1:1", "decode_url": "http://127.0.0.1:2",
            "side_channel": f"127.0.0.1:{base + 1}", "peer_agent": f"http://127.0.0.1:{base}",
        }],
    }
    path = tmp_path / "kv-agent.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "xpdctl", "kv-agent", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"http://127.0.0.1:{base}"
    proc.kill()
    proc.wait()


def test_a_broken_pair_fails_up_with_the_agents_reason(agent_with_a_dead_prefill):
    out = io.StringIO()
    with pytest.raises(UnhealthyError) as err:
        wait_kv_paths([agent_with_a_dead_prefill], timeout_s=300, progress=Progress(out), poll_s=0.5)
    assert "1 KV path(s) broken" in err.value.message
    assert err.value.details[0].startswith("  p0 -> d0: ")
    assert "is the prefill engine p0 running?" in err.value.details[0]
    pairs = agent_pairs(agent_with_a_dead_prefill)
    assert [(p.prefill, p.decode, p.state) for p in pairs] == [("p0", "d0", "broken")]


def test_an_agent_that_does_not_answer_times_out_with_why(free_port_block):
    url = f"http://127.0.0.1:{free_port_block(1)}"
    with pytest.raises(UnhealthyError, match="did not report every pair ok") as err:
        wait_kv_paths([url], timeout_s=0.5, progress=Progress(io.StringIO()), poll_s=0.1)
    assert f"cannot read {url}/pairs" in err.value.details[0]
