"""The image each container service of a host runs, read from the host's dockerd with the Docker SDK.

Through :func:`xpdctl.ssh.dockerd.docker_client` (an SSH forward of the host's docker socket, made with
the options the status script's SSH uses). A container is named as its service (``docker run --name``).
"""

from __future__ import annotations

import docker
from docker.errors import DockerException, NotFound

from xpdctl.observe.targets import HostTarget
from xpdctl.ssh.dockerd import DockerdUnreachable, docker_client
from xpdctl.ssh.transport import SshTransport
from xpdctl.status_model import ContainerImage


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
    try:
        with docker_client(transport, target, timeout_s) as client:
            return [_inspect(client, name, pinned) for name, pinned in services]
    except DockerdUnreachable as exc:
        problem = exc.why  # without the host's name, which status shows beside it
    except DockerException as exc:
        problem = f"the host's dockerd did not answer: {str(exc).splitlines()[0][:200]}"
    return [ContainerImage(service=name, pinned=pinned, error=problem) for name, pinned in services]
