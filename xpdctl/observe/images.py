"""The image each container service of a host runs, read from the host's dockerd with the Docker SDK.

The SDK talks to the host's ``/var/run/docker.sock`` through an SSH forward of that socket to a
private local one, made with the options the status script's SSH uses (key, known hosts), so dockerd
is never exposed on the network. A container is named as its service (``docker run --name``).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import DockerException, NotFound

from xpdctl.observe.targets import HostTarget
from xpdctl.ssh.transport import SshTransport
from xpdctl.status_model import ContainerImage

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


def _inspect(client: docker.DockerClient, service: str, pinned: str) -> ContainerImage:
    try:
        container = client.containers.get(service)
    except NotFound:
        return ContainerImage(service=service, pinned=pinned, error="no container")
    image_id = container.attrs["Image"]
    repository = pinned.split("@", 1)[0]
    digests = [d.split("@", 1)[1] for d in client.images.get(image_id).attrs.get("RepoDigests") or []
               if d.split("@", 1)[0] == repository]  # fmt: skip
    return ContainerImage(service=service, pinned=pinned, running=container.attrs["Config"]["Image"],
                          digest=digests[0] if digests else None, image_id=image_id)  # fmt: skip


def running_images(transport: SshTransport, target: HostTarget, timeout_s: float) -> list[ContainerImage]:
    """One entry per container service of ``target`` (none when it has none); blocking."""
    services = [(s.name, s.image) for s in target.services if s.image]
    if not services:
        return []
    with tempfile.TemporaryDirectory(prefix="xpd-docker-") as tmp:
        local = Path(tmp) / "docker.sock"
        tunnel = subprocess.Popen(transport.forward_argv(target, str(local), DOCKER_SOCKET),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            problem = _wait_for(local, tunnel, timeout_s)
            if problem is None:
                client = docker.DockerClient(base_url=f"unix://{local}", timeout=max(1, int(timeout_s)))
                try:
                    return [_inspect(client, name, pinned) for name, pinned in services]
                finally:
                    client.close()
        except DockerException as exc:
            problem = f"the host's dockerd did not answer: {str(exc).splitlines()[0][:200]}"
        finally:
            tunnel.terminate()
            tunnel.wait(timeout=10)
    return [ContainerImage(service=name, pinned=pinned, error=problem) for name, pinned in services]
