"""The containers tier's one lab: a fleet of two test hosts with Debian's dockerd, the fleet's registry,
the xpdctl image built here and pushed, and one `xpdctl up` with `runtime: container` that the tier's
tests share (package scope: made at the tier's first test, removed after its last).

The fleet: ctr-1 (1 x H100, prefill, router), ctr-2 (1 x MI300X, decode). GPUs are simulated (test
hosts); everything else is real: dockerd, containerd, runc, the registry, the image, SSH, units.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "upgrade"))
from deploy_helpers import COMMAND_TIMEOUT_S, complete  # noqa: E402
from upgrade_helpers import TOKEN, Load  # noqa: E402

from xpdctl.testhosts import builder, fleet, registry  # noqa: E402
from xpdctl.testhosts.models import GpuDecl  # noqa: E402

FLEET = "ctr"
SUBNET = "10.88.140.0/24"
PREFILL, DECODE = f"{FLEET}-1", f"{FLEET}-2"
ENGINES = {PREFILL: f"xpd-{FLEET}-prefill-0", DECODE: f"xpd-{FLEET}-decode-0"}
ROUTER = f"xpd-{FLEET}-router"
AGENT = f"xpd-{FLEET}-kv-agent"


def say(message: str) -> None:
    print(f"[containers] {message}", file=sys.stderr, flush=True)


def wait_serving(router_url: str, timeout_s: float = 180) -> float:
    """Seconds until a completion through the router succeeds again (bounded; fails the test after)."""
    started = time.monotonic()
    while True:
        try:
            complete(router_url, "tiny-gpt-oss", "are you back?", max_tokens=2, timeout_s=10)
            return time.monotonic() - started
        except OSError as exc:
            assert time.monotonic() - started < timeout_s, f"nothing served through {router_url} for {timeout_s:.0f} s: {exc}"
            time.sleep(1)


@dataclass
class Lab:
    tmp: Path
    record: fleet.FleetRecord
    inventory: Path
    image: str  # the xpdctl image as hosts pull it: registry.testhosts.invalid:5000/xpd/xpdctl@sha256:...
    pushed_as: str  # the same repository under this machine's name of the registry (for pushes)
    base: str  # the builder's base image tag
    timings: dict[str, float] = field(default_factory=dict)
    fleet: str = FLEET
    images: dict[str, str] = field(default_factory=dict)  # every image built, by recipe name, as hosts pull it

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, XPDCTL_STATE_DIR=str(self.tmp / "state"), XPDCTL_ROUTER_ADMIN_TOKEN=TOKEN)

    def xpdctl(self, *args: object) -> subprocess.CompletedProcess:
        """`python -m xpdctl ARGS -i <inventory>`, as a person runs it (never raises on its exit status)."""
        return subprocess.run([sys.executable, "-m", "xpdctl", *map(str, args), "-i", str(self.inventory)],
                              env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)  # fmt: skip

    def on(self, host: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``command`` on a test host over real SSH."""
        argv = fleet.ssh_argv(self.fleet, self.record.host(host).address)
        argv[-1:-1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        return subprocess.run([*argv, command], capture_output=True, text=True, timeout=timeout)

    def load(self, router_url: str, **kw) -> Load:
        """Steady streaming load through the router (tests/upgrade/upgrade_helpers.Load)."""
        return Load(router_url, TOKEN, "tiny-gpt-oss", **kw)


@contextmanager
def open_lab(tmp: Path, name: str, subnet: str, gpus: list[GpuDecl | None],
             recipes: tuple[builder.Recipe, ...] = (builder.XPDCTL,)) -> Iterator[Lab]:  # fmt: skip
    """A fleet with its registry, ``recipes``' images built here and pushed there; all removed after.

    The inventory fleet.create writes (hosts with GPUs only) gets `runtime: container` and the xpdctl
    image; a lab of other hosts writes its own (``lab.images`` has every image's reference).
    """
    patch = pytest.MonkeyPatch()
    # fleet.create registers the hosts' keys in the cluster's state dir, where `up` and SSH look.
    patch.setenv("XPDCTL_STATE_DIR", str(tmp / "state"))
    daemon = None
    try:
        timings: dict[str, float] = {}
        started = time.monotonic()
        native = tmp / "native.yaml"
        record = fleet.create(name, len(gpus), gpus, subnet=subnet,
                              inventory_path=native if any(gpus) else None, declare_nics=False,
                              with_registry=True)  # fmt: skip
        timings["fleet_s"] = time.monotonic() - started
        started = time.monotonic()
        daemon = builder.start_daemon()
        base = builder.base_image(say)
        timings["base_s"] = time.monotonic() - started
        images: dict[str, str] = {}
        for recipe in recipes:
            pushed_as = f"{record.gateway}:{registry.PORT}/xpd/{recipe.name}"
            timings[f"{recipe.name}_build_s"] = builder.build(recipe, base, f"{pushed_as}:ci", say)
            pushed = builder.push(f"{pushed_as}:ci", say)
            timings[f"{recipe.name}_push_s"] = pushed.seconds
            # The hosts pull the same manifest under the registry's name, over verified HTTPS.
            images[recipe.name] = f"{registry.NAME}:{registry.PORT}/xpd/{recipe.name}@{pushed.digest}"
        inventory = tmp / "containers.yaml"
        if native.exists():
            loaded = yaml.safe_load(native.read_text())
            loaded["engine"] = {**loaded["engine"], "runtime": "container", "xpdctl_image": images["xpdctl"]}
            inventory.write_text(yaml.safe_dump(loaded, sort_keys=False))
        yield Lab(tmp, record, inventory, images["xpdctl"], f"{record.gateway}:{registry.PORT}/xpd/xpdctl", base,
                  timings, fleet=name, images=images)  # fmt: skip
    finally:
        if daemon is not None:
            builder.stop_daemon(daemon)
        fleet.destroy(name)
        patch.undo()


@pytest.fixture(scope="package")
def lab(tmp_path_factory, testhosts_possible):
    with open_lab(tmp_path_factory.mktemp("containers"), FLEET, SUBNET,
                  [GpuDecl(vendor="nvidia", count=1), GpuDecl(vendor="amd", count=1)]) as made:  # fmt: skip
        yield made


@pytest.fixture(scope="package")
def up(lab):
    """The result of `xpdctl up -o json` of the container cluster (parsed)."""
    started = time.monotonic()
    # Test hosts share this machine's disk: preflight's 100 GiB for /var/lib/docker is a real server's.
    done = lab.xpdctl("up", "-o", "json", "--timeout", 600, "-e", "preflight_disk_images_gib=10")
    lab.timings["up_s"] = time.monotonic() - started
    say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in lab.timings.items()))
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-4000:]
    return json.loads(done.stdout)
