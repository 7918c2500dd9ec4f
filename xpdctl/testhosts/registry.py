"""A real container registry on the fleet's bridge: Debian's ``docker-registry`` (distribution 2.8).

Test hosts resolve :data:`NAME` to the bridge and trust the fleet CA, so ``docker pull
registry.testhosts.invalid:5000/x@sha256:...`` there runs as against a production registry over
HTTPS, digest check included. Blobs live in the cache (:func:`storage`), shared by every fleet, so
an image pushed once serves later fleets too. Pushes from this machine go to ``<bridge IP>:5000``
(the same registry; a builder dockerd lists the fleet's subnets as insecure, since this machine does
not trust the fleet CA); a digest is the same whatever name the image is pushed or pulled under.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from xpdctl.testhosts.identity import Identity, issue_server_certificate
from xpdctl.testhosts.layout import FleetDirs, cache_root
from xpdctl.testhosts.run import recorded_process, spawn_server

NAME = "registry.testhosts.invalid"
PORT = 5000
BINARY = "/usr/bin/docker-registry"


def storage() -> Path:
    return cache_root() / "registry"


def config(bind: str, cert: Path, key: Path) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage()}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {bind}:{PORT}\n"
        f"  tls:\n    certificate: {cert}\n    key: {key}\n"
    )


def start(dirs: FleetDirs, bind: str, ident: Identity) -> None:
    """Start the fleet's registry on ``bind``:5000 unless it runs."""
    if running(dirs) is not None:
        return
    storage().mkdir(parents=True, exist_ok=True)
    # Its own certificate from the fleet CA, made here: the mirror's certificate (and so the cache's
    # identity, which every test-host root embeds) stays the same for fleets without a registry.
    cert, key = dirs.root / "registry.crt", dirs.root / "registry.key"
    if not cert.exists():
        issue_server_certificate(ident, [NAME], cert, key, "registry")
    dirs.registry_config.write_text(config(bind, cert, key))
    serve(dirs)


def serve(dirs: FleetDirs) -> None:
    """Start the registry with the configuration :func:`start` wrote (again, after :func:`stop`)."""
    spawn_server([BINARY, "serve", str(dirs.registry_config)], dirs.registry_log, dirs.registry_pid)


def stop(dirs: FleetDirs, timeout: float = 10) -> None:
    """Stop the fleet's registry (what a registry outage looks like to the hosts)."""
    pid = running(dirs)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(dirs) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def running(dirs: FleetDirs) -> int | None:
    """The fleet's registry process, or None."""
    return recorded_process(dirs.registry_pid, BINARY.encode())
