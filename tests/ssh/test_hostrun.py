"""A host that does not answer is an error naming it, not a hang: real ssh against loopback ports
where nothing listens (refused) or where a listener accepts and never speaks (SSH never starts)."""

import socket
from pathlib import Path

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.inventory import load_inventory
from xpdctl.remote.executor import RemoteExecutor
from xpdctl.ssh.hostrun import run_on_hosts, ssh_targets
from xpdctl.ssh.target import HostLink, SshTarget
from xpdctl.ssh.transport import SshTransport

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A listener that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def target(port: int) -> HostLink:
    return HostLink(name="h1", address="127.0.0.1", ssh=SshTarget(user="root", port=port))


def test_refused_host_is_named(closed_port, tmp_path):
    transport = SshTransport(options={"UserKnownHostsFile": str(tmp_path / "known_hosts")})
    [(name, run)] = run_on_hosts(transport, {"h1": (target(closed_port), "echo hi")}, 20).items()
    problem = run.problem(20)
    assert name == "h1" and f"h1 (root@127.0.0.1:{closed_port}) is unreachable over SSH" in problem
    assert "refused" in problem.lower()


def test_silent_host_is_bounded(silent_port, tmp_path):
    transport = SshTransport(connect_timeout_s=1, options={"UserKnownHostsFile": str(tmp_path / "known_hosts")})
    run = run_on_hosts(transport, {"h1": (target(silent_port), "echo hi")}, 5)["h1"]
    assert run.result.rc in (None, 255)  # ssh's own timeout, or the script's bound
    assert "h1 (root@127.0.0.1" in run.problem(5)


def test_executor_names_the_unreachable_host(closed_port, tmp_path, monkeypatch):
    monkeypatch.setenv("XPDCTL_STATE_DIR", str(tmp_path))
    text = (REPO / "inventory" / "local.yaml").read_text().replace("python: ../.venv/bin/python",
                                                                   f"python: {REPO}/.venv/bin/python")
    path = tmp_path / "inv.yaml"
    path.write_text(text + f"defaults: {{ssh: {{port: {closed_port}}}}}\n")
    inventory = load_inventory(path).inventory
    assert ssh_targets(inventory)["local"].ssh.port == closed_port
    with pytest.raises(ExecutionError) as err:
        RemoteExecutor(inventory, tmp_path / "rendered").services()
    assert "local (root@127.0.0.1" in err.value.message and "unreachable over SSH" in err.value.message
