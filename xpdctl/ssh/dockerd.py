"""A Docker SDK client for one host's dockerd, for the Python parts of xpdctl that read or pull images.

Over SSH, the SDK talks to the host's ``/var/run/docker.sock`` through an ``ssh -N -L`` forward of that
socket to a private local one, made with the transport's own options (key, known hosts, BatchMode), so
dockerd is never exposed on the network. A cluster whose hosts are all this machine
(:class:`~xpdctl.ssh.transport.LocalShellTransport`) uses this machine's socket directly.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.errors import DockerException

from xpdctl.errors import ExecutionError
from xpdctl.ssh.target import HostLink
from xpdctl.ssh.transport import LocalShellTransport, SshTransport

DOCKER_SOCKET = "/var/run/docker.sock"


def _wait_for(path: Path, tunnel: subprocess.Popen, timeout_s: float) -> str | None:
    """None once ``path`` exists; else why it does not (the forward's own error, or the time it took)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if tunnel.poll() is not None:
            said = [line for line in tunnel.stderr.read().decode(errors="replace").splitlines() if line.strip()]
            return f"ssh forward of {DOCKER_SOCKET} failed: {said[-1] if said else f'exit status {tunnel.returncode}'}"
        if time.monotonic() > deadline:
            return f"ssh forward of {DOCKER_SOCKET} not ready within {timeout_s:g} s"
        time.sleep(0.05)
    return None


class DockerdUnreachable(ExecutionError):
    def __init__(self, target: HostLink, why: str):
        self.why = f"the host's dockerd did not answer: {why}"
        super().__init__(f"{target.name}: {self.why}; check `systemctl status docker` there "
                         f"(`ssh {target.ssh.user}@{target.address}`), then run the command again")


@contextlib.contextmanager
def docker_client(transport: SshTransport | LocalShellTransport, target: HostLink, timeout_s: float
                  ) -> Iterator[docker.DockerClient]:
    """A client of ``target``'s dockerd for the ``with`` block; :class:`DockerdUnreachable` (an
    ExecutionError naming the host) when the forward or dockerd does not answer. Calls made in the block
    raise the SDK's own errors."""
    with contextlib.ExitStack() as stack:
        if isinstance(transport, SshTransport):
            local = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xpd-docker-"))) / "docker.sock"
            tunnel = subprocess.Popen(transport.forward_argv(target, str(local), DOCKER_SOCKET),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            stack.callback(tunnel.wait, timeout=10)
            stack.callback(tunnel.terminate)
            problem = _wait_for(local, tunnel, timeout_s)
            if problem is not None:
                raise DockerdUnreachable(target, problem)
            url = f"unix://{local}"
        else:
            url = f"unix://{DOCKER_SOCKET}"
        try:
            client = docker.DockerClient(base_url=url, timeout=max(1, int(timeout_s)))
            client.ping()
        except DockerException as exc:
            raise DockerdUnreachable(target, str(exc).splitlines()[0][:200]) from exc
        stack.callback(client.close)
        yield client
