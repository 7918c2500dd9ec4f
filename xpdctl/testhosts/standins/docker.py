#!/usr/bin/python3
"""Stand-in Docker, chosen by the name it runs as: ``dockerd`` (the daemon the unit starts) and ``docker``.

No container engine runs where test hosts live, so this keeps what provisioning touches: the daemon
reads /etc/docker/daemon.json (and refuses to start when it is not valid JSON, like dockerd), ``docker
info`` lists the runtimes configured there (``nvidia`` once ``nvidia-ctk runtime configure`` ran),
``pull`` records images by reference with a content-derived ID, and ``image inspect`` finds them.
The CLI fails like the real one when the daemon is not running. Containers cannot be run.
"""

import hashlib
import json
import os
import signal
import socket
import sys
import time

import xpd_standin

SOCKET = "/run/docker.sock"
PIDFILE = "/run/docker.pid"
CONFIG = "/etc/docker/daemon.json"
IMAGES = "/var/lib/docker/xpd-images.json"
NO_DAEMON = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


def daemon_config():
    if not os.path.exists(CONFIG):
        return {}
    with open(CONFIG) as handle:
        return json.load(handle)


def dockerd(argv):
    try:
        daemon_config()
    except ValueError as exc:
        xpd_standin.die(f"unable to configure the Docker daemon with file {CONFIG}: {exc}", 1)
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(SOCKET)
    server.listen(1)
    with open(PIDFILE, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    print("API listen on /run/docker.sock", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def require_daemon():
    try:
        with open(PIDFILE) as handle:
            os.kill(int(handle.read()), 0)
    except (OSError, ValueError):
        xpd_standin.die(NO_DAEMON, 1)
    if not os.path.exists(SOCKET):
        xpd_standin.die(NO_DAEMON, 1)


def images():
    if not os.path.exists(IMAGES):
        return {}
    with open(IMAGES) as handle:
        return json.load(handle)


def pull(ref):
    store = images()
    image_id = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
    name = ref.split("@")[0]
    if ref in store:
        print(f"Status: Image is up to date for {ref}")
    else:
        store[ref] = image_id
        os.makedirs(os.path.dirname(IMAGES), exist_ok=True)
        with open(IMAGES, "w") as handle:
            json.dump(store, handle, indent=2)
        digest = ref.split("@", 1)[1] if "@" in ref else image_id
        print(f"{name.rsplit(':', 1)[-1] if '@' not in ref else digest[7:19]}: Pulling from {name}")
        print(f"Digest: {digest}\nStatus: Downloaded newer image for {ref}")
    print(ref)


def inspect(argv):
    refs = [arg for arg in argv if not arg.startswith("--") and "{{" not in arg]
    store = images()
    for ref in refs:
        if ref not in store:
            xpd_standin.die(f"Error response from daemon: No such image: {ref}", 1)
        print(store[ref] if "--format" in argv else json.dumps([{"Id": store[ref], "RepoDigests": [ref]}], indent=4))


def docker(argv):
    own = xpd_standin.package("docker-ce-cli") or {"upstream": "unknown"}
    version = own["upstream"].split(":")[-1]
    if argv[:1] == ["--version"]:
        print(f"Docker version {version}, build xpd-testhost")
        return
    require_daemon()
    if argv[:1] == ["version"]:
        print(f"Client: Docker Engine - Community\n Version:           {version}\n\nServer: Docker Engine - Community")
        print(f" Engine:\n  Version:          {version}")
    elif argv[:1] == ["info"]:
        runtimes = ["io.containerd.runc.v2", "runc", *daemon_config().get("runtimes", {})]
        print(f"Server Version: {version}\nRuntimes: {' '.join(sorted(set(runtimes)))}\nDefault Runtime: runc")
    elif argv[:1] == ["pull"]:
        pull(argv[-1])
    elif argv[:2] == ["image", "inspect"]:
        inspect(argv[2:])
    elif argv[:1] == ["images"]:
        print("REPOSITORY   DIGEST   IMAGE ID")
        for ref, image_id in images().items():
            print(f"{ref.split('@')[0]}   {ref.split('@')[1] if '@' in ref else '<none>'}   {image_id[7:19]}")
    else:
        xpd_standin.die(f"stand-in docker cannot run {' '.join(argv)!r}: no container engine on a test host", 125)


if __name__ == "__main__":
    (dockerd if os.path.basename(sys.argv[0]) == "dockerd" else docker)(sys.argv[1:])
