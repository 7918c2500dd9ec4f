"""The Docker SDK client of a host (xpdctl/ssh/dockerd.py): real ssh on loopback; what a person reads
when the host's dockerd cannot be reached. The pulls and inspections themselves run against real dockerd
on test hosts (tests/containers)."""

import socket

import pytest

from xpdctl.ssh.dockerd import DockerdUnreachable, docker_client
from xpdctl.ssh.target import HostLink, SshTarget
from xpdctl.ssh.transport import SshTransport


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_whose_ssh_refuses_is_one_error_naming_the_host_and_what_to_check(tmp_path):
    target = HostLink(name="gpu-7", address="127.0.0.1", ssh=SshTarget(user="root", port=_closed_port()))
    transport = SshTransport(options={"UserKnownHostsFile": str(tmp_path / "known_hosts")})
    with pytest.raises(DockerdUnreachable) as raised:
        with docker_client(transport, target, timeout_s=20):
            pytest.fail("no client without a forward")
    message = raised.value.message
    assert message.startswith("gpu-7: the host's dockerd did not answer: ssh forward of /var/run/docker.sock failed: ")
    assert "refused" in message and "systemctl status docker" in message, message
