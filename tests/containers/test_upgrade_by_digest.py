"""A new image for the decode pool, as an operator gets there at 3 a.m.: wrong images first, then the
right one under steady load (tier `containers`, on the lab of tests/containers/conftest.py).

Bad input: an image the registry does not have (another repository), a digest it does not have, the
registry down, dockerd stopped on the host. Each must fail with one line naming the host, the image and
what to do (the table in playbooks/roles/images/vars/main.yml, shared by `up` and `upgrade`), and stop
nothing: the pull comes before anything is stopped, so the engine keeps serving the old image.

Then `upgrade --resume --image <second image>` under steady streaming load: zero failed requests, the
decode host runs the new digest (`docker inspect`), and `status` reads each engine's running digest with
the Docker SDK (xpdctl/observe/images.py). The second image is a real build: the same Dockerfile with
another label (`docker build --label`), so its config and digest differ while its layers are the first
image's (its push sends a config and a manifest). The decode pool is one instance: the rollout goes
through a surge instance beside it, in a container of its own name (xpd-ctr-decode-0-next).
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import AGENT, DECODE, ENGINES, FLEET, PREFILL, say, wait_serving
from deploy_helpers import complete

from xpdctl.testhosts import builder, registry
from xpdctl.testhosts.layout import fleet_dirs

pytestmark = pytest.mark.containers

ADVICE = {
    "digest": "the registry has no image with this digest",
    "registry down": "the registry is not reachable from the host",
    "dockerd": "dockerd is not running on the host: start it",
}


@pytest.fixture(scope="module")
def second_image(lab):
    tag = f"{lab.pushed_as}:ci-next"
    seconds = builder.build(builder.XPDCTL, lab.base, tag, say, labels={"org.opencontainers.image.revision": "ci-next"})
    pushed = builder.push(tag, say)
    lab.timings.update(second_build_s=seconds, second_push_s=pushed.seconds)
    return f"{registry.NAME}:{registry.PORT}/xpd/xpdctl@{pushed.digest}"


def _running(lab, host: str, name: str) -> tuple[str, list[str]]:
    """(the reference the container was started with, the repository digests of the image it runs)."""
    found = lab.on(host, f"docker inspect --format '{{{{.Config.Image}}}}' {name} && docker image inspect "
                         f"--format '{{{{json .RepoDigests}}}}' $(docker inspect --format '{{{{.Image}}}}' {name})")
    assert found.returncode == 0, found.stderr
    ref, digests = found.stdout.splitlines()
    return ref, [d.split("@", 1)[1] for d in json.loads(digests)]


def _upgrade(lab, image: str, *extra: str):
    return lab.xpdctl("upgrade", "--pool", "decode", "--image", image, "--timeout", 300, "--drain-timeout", 120, *extra)


def _fails_and_stops_nothing(lab, up, done, image: str, advice: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and any(DECODE in line and image in line and advice in line for line in lines), done.stderr
    assert _running(lab, DECODE, ENGINES[DECODE])[0] == lab.image
    assert lab.on(DECODE, f"docker inspect --format '{{{{.State.Running}}}}' {ENGINES[DECODE]}").stdout.strip() == "true"


def test_an_upgrade_to_a_digest_the_registry_lacks_fails_and_stops_nothing(lab, up):
    wrong = lab.image.split("@")[0] + "@sha256:" + "0" * 64
    _fails_and_stops_nothing(lab, up, _upgrade(lab, wrong), wrong, ADVICE["digest"])


def test_an_image_of_a_repository_the_registry_lacks_fails_and_stops_nothing(lab, up):
    missing = f"{registry.NAME}:{registry.PORT}/xpd/no-such-image@{lab.image.split('@')[1]}"
    done = _upgrade(lab, missing, "--resume")
    # Docker 20.10 reports a repository the registry lacks as it reports a missing digest (see the run).
    _fails_and_stops_nothing(lab, up, done, missing, "push the image")


def test_a_registry_that_is_down_fails_the_pull_and_stops_nothing(lab, up, second_image):
    registry.stop(fleet_dirs(FLEET))
    try:
        done = _upgrade(lab, second_image, "--resume")
    finally:
        registry.serve(fleet_dirs(FLEET))
    _fails_and_stops_nothing(lab, up, done, second_image, ADVICE["registry down"])


def test_a_stopped_dockerd_fails_the_pull_with_what_to_do(lab, up, second_image):
    """dockerd stopped by hand: the pull says so, and the engine serves on meanwhile (live-restore; the
    unit follows its container through dockerd's absence: tests/containers/test_dockerd_restart.py)."""
    assert lab.on(DECODE, "systemctl stop docker").returncode == 0
    try:
        done = _upgrade(lab, second_image, "--resume")
        assert complete(up["router_url"], "tiny-gpt-oss", "still there?", max_tokens=4)["usage"]["completion_tokens"] > 0
    finally:
        assert lab.on(DECODE, "systemctl start docker").returncode == 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and any(DECODE in l and second_image in l and ADVICE["dockerd"] in l for l in lines), done.stderr
    wait_serving(up["router_url"])


def test_rolling_upgrade_by_digest_under_load_fails_no_request(lab, up, second_image):
    old_digest, new_digest = lab.image.split("@")[1], second_image.split("@")[1]
    assert old_digest != new_digest
    started = time.monotonic()
    with lab.load(up["router_url"], workers=3, max_seconds=600) as traffic:
        done = _upgrade(lab, second_image, "--resume")
    lab.timings["upgrade_s"] = time.monotonic() - started
    say(f"rolling upgrade: {lab.timings['upgrade_s']:.0f} s, {traffic.ok} requests served, "
        f"{len(traffic.failures)} failed; timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in lab.timings.items()))
    if done.returncode != 0:  # what the decode host says, for the report
        found = lab.on(DECODE, f"docker ps -a; tail -n 60 /var/log/journal/{ENGINES[DECODE]}.service.log; "
                               f"systemctl status {ENGINES[DECODE]}; ls /var/log/journal")
        say(f"after the failed upgrade, {DECODE}:\n{found.stdout}{found.stderr}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert traffic.ok > 0 and traffic.failures == [], traffic.failure_summary()
    assert _running(lab, DECODE, ENGINES[DECODE]) == (second_image, [new_digest])
    assert _running(lab, PREFILL, ENGINES[PREFILL]) == (lab.image, [old_digest])
    # The surge instance ran in its own container (xpd-ctr-decode-0-next) and left with it.
    left = lab.on(DECODE, "docker ps --all --format '{{.Names}}'").stdout.split()
    assert sorted(left) == sorted([ENGINES[DECODE], AGENT]), left


def test_status_shows_the_digest_each_engine_runs(lab, up, second_image):
    done = lab.xpdctl("status", "-o", "json")
    status = json.loads(done.stdout)
    running = {c["service"]: c["digest"] for host in status["hosts"] for c in host["containers"]}
    assert running[ENGINES[PREFILL]] == lab.image.split("@")[1]
    assert running[ENGINES[DECODE]] == second_image.split("@")[1]
    # The inventory still pins the first image (--image is the rollout's, not the file's): a warning.
    said = [p["what"] for p in status["problems"]]
    assert f"{ENGINES[DECODE]} runs {second_image.split('@')[1]}, render pins {lab.image.split('@')[1]}" in said, said


def test_an_up_with_an_image_the_registry_lacks_fails_before_any_service_changes(lab, up):
    """`up` pulls in the images role, before xpdctl's applier changes any unit: the pull fails with the
    role's line and the running containers stay as they are. Last, as it leaves `up`'s records behind."""
    inventory = lab.inventory.read_text()
    wrong = lab.image.split("@")[0] + "@sha256:" + "1" * 64
    lab.inventory.write_text(inventory.replace(lab.image, wrong))
    try:
        done = lab.xpdctl("up", "--timeout", 120, "-e", "preflight_disk_images_gib=10")
    finally:
        lab.inventory.write_text(inventory)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert f"{PREFILL}: pulling {wrong} failed:" in said and ADVICE["digest"] in said, said[-3000:]
    assert _running(lab, PREFILL, ENGINES[PREFILL])[0] == lab.image
