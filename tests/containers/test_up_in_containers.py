"""`xpdctl up` with `runtime: container` on test hosts running Debian's real dockerd (tier `containers`).

Real here: dockerd 20.10 + containerd + runc on every host, started by the host's init from the
docker-ce unit (the test hosts' docker-ce carries Debian's docker.io engine under Docker's package
name: xpdctl/testhosts/packages.yaml); Debian's docker-registry on the fleet's bridge over HTTPS; the
xpdctl image built with `docker build` on the test hosts' own Debian root (`docker import`) and pulled
by the digest its push returned. Simulated (hardware only): GPUs, `nvidia-container-runtime` (hands the
container to runc with no device) and its hook, and the /dev/kfd, /dev/dri nodes of the AMD driver
stand-in. Engines are simulator engines in the xpdctl image; real vLLM in containers is `soak`.
The lab (fleet, registry, image, one `up`) is shared by the tier: tests/containers/conftest.py.
"""

from __future__ import annotations

import json

import pytest
from conftest import AGENT, DECODE, ENGINES, PREFILL, ROUTER
from deploy_helpers import complete

pytestmark = pytest.mark.containers


def test_up_in_containers_serves_pd_across_hosts_through_the_router(up):
    pairs = [(p["prefill"], p["decode"], p["ok"]) for p in up["kv_pairs"]]
    assert pairs == [(ENGINES[PREFILL], ENGINES[DECODE], True)]
    assert up["reached"] == "done" and up["smoke"]["completion_tokens"] > 0
    answer = complete(up["router_url"], "tiny-gpt-oss", "Containers for real: " * 40)
    assert answer["usage"]["completion_tokens"] > 0


def test_every_host_runs_the_real_engine_started_by_its_init(lab, up):
    for host in (PREFILL, DECODE):
        info = lab.on(host, "systemctl is-active docker containerd; docker info --format "
                            "'{{.ServerVersion}} {{.Driver}} {{.CgroupDriver}} {{.LiveRestoreEnabled}}'")
        assert info.returncode == 0, info.stderr
        assert info.stdout.split() == ["active", "active", "20.10.24+dfsg1", "overlay2", "cgroupfs", "true"], host


def test_engines_and_agents_run_the_pinned_digest_in_containers(lab, up):
    names = {PREFILL: [ENGINES[PREFILL], AGENT, ROUTER], DECODE: [ENGINES[DECODE], AGENT]}
    for host, wanted in names.items():
        found = lab.on(host, "docker inspect --format '{{.Name}} {{.Config.Image}}' " + " ".join(wanted))
        assert found.stdout.split() == [x for name in wanted for x in (f"/{name}", lab.image)], (host, found.stderr)


def test_gpu_flags_reach_the_stand_in_runtime_and_device_nodes(lab, up):
    """The hardware layer only: dockerd runs the prefill container with the stand-in nvidia runtime and
    a GPU device request (--gpus, served by the stand-in hook), and gives the decode container the AMD
    driver stand-in's /dev/kfd and /dev/dri."""
    nvidia = lab.on(PREFILL, "docker inspect --format '{{.HostConfig.Runtime}} "
                             f"{{{{len .HostConfig.DeviceRequests}}}}' {ENGINES[PREFILL]}")
    assert nvidia.stdout.split() == ["nvidia", "1"], nvidia.stderr
    amd = lab.on(DECODE, f"docker inspect --format '{{{{json .HostConfig.Devices}}}}' {ENGINES[DECODE]}")
    assert [d["PathOnHost"] for d in json.loads(amd.stdout)] == ["/dev/kfd", "/dev/dri"], amd.stderr


def test_a_container_sees_only_its_hosts_network(lab, up):
    """--network host is the test host's namespace: its lo and eth0, none of this machine's links."""
    found = lab.on(PREFILL, f"docker exec {ENGINES[PREFILL]} cat /proc/net/dev")
    names = {line.split(":")[0].strip() for line in found.stdout.splitlines() if ":" in line}
    assert names == {"lo", "eth0"}, (found.stdout, found.stderr)


def test_a_digest_the_registry_does_not_have_fails_the_pull(lab, up):
    wrong = lab.image.split("@")[0] + "@sha256:" + "0" * 64
    pulled = lab.on(DECODE, f"docker pull {wrong}")
    assert pulled.returncode != 0 and "manifest unknown" in pulled.stderr, pulled.stderr
