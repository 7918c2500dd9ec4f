"""Containers for real: Debian's dockerd on test hosts, a real registry, the xpdctl image built here,
and `xpdctl up` with `runtime: container` across hosts (tier `containers`; not yet in CI, see pytestmark).

Real here: dockerd 20.10 + containerd + runc on every host, started by the host's init from the
docker-ce unit (test hosts' packages carry Debian's docker.io engine under Docker's package names,
see xpdctl/testhosts/packages.yaml); Debian's docker-registry on the bridge over HTTPS; the xpdctl
image built with `docker build` on a base made here (debootstrap + `docker import`) and pulled by the
digest its push returned. Simulated (hardware only): GPUs, `nvidia-container-runtime` (hands the
container to runc with no device) and its hook, and the /dev/kfd, /dev/dri nodes of the AMD driver
stand-in. Engines are simulator engines in the xpdctl image; real vLLM in containers is `soak`.

The fleet: ctr-1 (1 x H100, prefill), ctr-2 (1 x MI300X, decode), ctr-3 (router, no GPU).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploy_helpers import complete, ssh, state_env, xpdctl_runner  # noqa: E402

from xpdctl.testhosts import builder, fleet, registry  # noqa: E402
from xpdctl.testhosts.models import GpuDecl  # noqa: E402

# Also `soak` until it fits CI's 10 minutes: measured here on a cold cache, base 408 s + wheels 133 s +
# build 390 s + push 420 s + `up` 520 s (three 2.2 GB pulls). `pytest -m containers` runs it.
pytestmark = [pytest.mark.containers, pytest.mark.soak]

FLEET = "ctr"
SUBNET = "10.88.140.0/24"
PREFILL, DECODE, ROUTER = (f"{FLEET}-{i}" for i in range(1, 4))
UNITS = {PREFILL: f"xpd-{FLEET}-prefill-0", DECODE: f"xpd-{FLEET}-decode-0"}


def _say(message: str) -> None:
    print(f"[containers] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, testhosts_possible):
    """(xpdctl runner, container inventory, fleet record, pinned xpdctl image, timings)."""
    tmp = tmp_path_factory.mktemp("containers")
    env = state_env(tmp)
    patch = pytest.MonkeyPatch()
    patch.setenv("XPDCTL_STATE_DIR", env["XPDCTL_STATE_DIR"])
    timings: dict[str, float] = {}
    daemon = None
    try:
        native = tmp / "native.yaml"
        record = fleet.create(FLEET, 3, [GpuDecl(vendor="nvidia", count=1), GpuDecl(vendor="amd", count=1), None],
                              subnet=SUBNET, inventory_path=native, declare_nics=False)  # fmt: skip
        daemon = builder.start_daemon()
        started = time.monotonic()
        base = builder.base_image(_say)
        timings["base_s"] = time.monotonic() - started
        pushed_as = f"{record.gateway}:{registry.PORT}/xpd/xpdctl:test"
        timings["build_s"] = builder.build_xpdctl(base, pushed_as, _say)
        pushed = builder.push(pushed_as, _say)
        timings["push_s"] = pushed.seconds
        # The hosts pull the same manifest under the registry's name, over verified HTTPS.
        image = f"{registry.NAME}:{registry.PORT}/xpd/xpdctl@{pushed.digest}"
        loaded = yaml.safe_load(native.read_text())
        loaded["engine"] = {**loaded["engine"], "runtime": "container", "xpdctl_image": image}
        inventory = tmp / "containers.yaml"
        inventory.write_text(yaml.safe_dump(loaded, sort_keys=False))
        yield xpdctl_runner(env), inventory, record, image, timings
    finally:
        if daemon is not None:
            builder.stop_daemon(daemon)
        fleet.destroy(FLEET)
        patch.undo()


def _on(record, host: str, command: str):
    return ssh(FLEET, record.host(host).address, command)


@pytest.fixture(scope="module")
def up(lab):
    xpdctl, inventory, _, _, timings = lab
    started = time.monotonic()
    # Test hosts share this machine's disk: preflight's 100 GiB for /var/lib/docker is a real server's.
    done = xpdctl("up", "-i", inventory, "-o", "json", "--timeout", 900, "-e", "preflight_disk_images_gib=10")
    timings["up_s"] = time.monotonic() - started
    _say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert done.stdout.strip(), done.stderr[-4000:]
    return done, json.loads(done.stdout)


def test_up_in_containers_serves_pd_across_hosts_through_the_router(up):
    done, result = up
    assert done.returncode == 0, done.stderr[-4000:]
    pairs = [(p["prefill"], p["decode"], p["ok"]) for p in result["kv_pairs"]]
    assert pairs == [(UNITS[PREFILL], UNITS[DECODE], True)]
    assert result["reached"] == "done" and result["smoke"]["completion_tokens"] > 0


def test_every_host_runs_the_real_engine_started_by_its_init(lab, up):
    _, _, record, _, _ = lab
    for host in (PREFILL, DECODE, ROUTER):
        info = _on(record, host, "systemctl is-active docker containerd; docker info --format "
                                 "'{{.ServerVersion}} {{.Driver}} {{.CgroupDriver}} {{.LiveRestoreEnabled}}'")
        assert info.returncode == 0, info.stderr
        assert info.stdout.split() == ["active", "active", "20.10.24+dfsg1", "overlay2", "cgroupfs", "true"], host


def test_engines_and_agents_run_the_pinned_digest_in_containers(lab, up):
    _, _, record, image, _ = lab
    units = {PREFILL: [UNITS[PREFILL], f"xpd-{FLEET}-kv-agent"], DECODE: [UNITS[DECODE], f"xpd-{FLEET}-kv-agent"],
             ROUTER: [f"xpd-{FLEET}-router"]}  # fmt: skip
    for host, names in units.items():
        found = _on(record, host, "docker inspect --format '{{.Name}} {{.Config.Image}}' " + " ".join(names))
        assert found.stdout.split() == [x for name in names for x in (f"/{name}", image)], (host, found.stderr)


def test_gpu_flags_reach_the_stand_in_runtime_and_device_nodes(lab, up):
    """The hardware layer only: dockerd runs the prefill container with the stand-in nvidia runtime and
    a GPU device request (--gpus, served by the stand-in hook), and gives the decode container the AMD
    driver stand-in's /dev/kfd and /dev/dri."""
    _, _, record, _, _ = lab
    nvidia = _on(record, PREFILL, f"docker inspect --format '{{{{.HostConfig.Runtime}}}} "
                                  f"{{{{len .HostConfig.DeviceRequests}}}}' {UNITS[PREFILL]}")
    assert nvidia.stdout.split() == ["nvidia", "1"], nvidia.stderr
    amd = _on(record, DECODE, f"docker inspect --format '{{{{json .HostConfig.Devices}}}}' {UNITS[DECODE]}")
    assert [d["PathOnHost"] for d in json.loads(amd.stdout)] == ["/dev/kfd", "/dev/dri"], amd.stderr


def test_a_container_sees_only_its_hosts_network(lab, up):
    """--network host is the test host's namespace: its lo and eth0, none of this machine's links."""
    _, _, record, _, _ = lab
    found = _on(record, PREFILL, f"docker exec {UNITS[PREFILL]} cat /proc/net/dev")
    names = {line.split(":")[0].strip() for line in found.stdout.splitlines() if ":" in line}
    assert names == {"lo", "eth0"}, (found.stdout, found.stderr)


def test_a_digest_the_registry_does_not_have_fails_the_pull(lab, up):
    _, _, record, image, _ = lab
    wrong = image.split("@")[0] + "@sha256:" + "0" * 64
    pulled = _on(record, DECODE, f"docker pull {wrong}")
    assert pulled.returncode != 0 and "manifest unknown" in pulled.stderr, pulled.stderr


def test_requests_flow_through_the_router(lab, up):
    _, inventory, record, _, _ = lab
    _, result = up
    loaded = yaml.safe_load(inventory.read_text())
    answer = complete(result["router_url"], loaded["model"]["name"], "Containers for real: " * 40)
    assert answer["usage"]["completion_tokens"] > 0


def test_down_leaves_no_container_and_no_unit(lab, up):
    xpdctl, inventory, record, _, _ = lab
    done = xpdctl("down", "-i", inventory)
    assert done.returncode == 0, done.stderr[-3000:]
    for host in (PREFILL, DECODE, ROUTER):
        left = _on(record, host, "docker ps -aq; systemctl list-units --all --no-legend 'xpd-*' | grep -cw active")
        assert left.stdout.split() == ["0"], (host, left.stdout)
