"""A dockerd restart on a serving host (`systemctl restart docker`: what a package upgrade or the docker
role's handler does) while requests flow: nothing fails and the engine container is the same one.

Why it holds: dockerd runs with live-restore (playbooks/roles/docker/defaults/main.yml), so it leaves
containers running while it restarts; the units start their container detached and follow it with
/etc/xpdctl/container-run (templates/systemd/container-run), which waits for dockerd to come back
instead of ending (an attached `docker run` ends with EOF when dockerd restarts: moby/moby#27987, and
the unit's restart would remove the serving container); and the units only want docker.service
(Wants=, not Requires=: systemd restarts the units that require a unit it restarts).

What a test host can and cannot show: its init is Debian's daemonless systemctl, which starts and
stops units one at a time and propagates no dependency on a restart (neither Requires= nor Wants=), so
the Requires=/Wants= difference is systemd's documented behaviour (systemd.unit(5), Requires=), not
something this test observes; the units' syntax is checked by `systemd-analyze verify`
(tests/test_render.py::test_units_pass_systemd_analyze_verify). What this test shows for real is
dockerd's side: live-restore keeps the container, and the unit's process survives the restart.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from conftest import DECODE, ENGINES, say, wait_serving

from xpdctl.inventory.topology import DEFAULT_POOL_PORT

pytestmark = pytest.mark.containers


def _container(lab, host: str, name: str) -> str:
    found = lab.on(host, f"docker inspect --format '{{{{.Id}}}} {{{{.State.StartedAt}}}} {{{{.State.Running}}}}' {name}")
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def test_a_dockerd_restart_under_load_fails_no_request_and_keeps_the_container(lab, up):
    before = _container(lab, DECODE, ENGINES[DECODE])
    assert before.endswith(" true")
    unit = f"{ENGINES[DECODE]}.service"
    assert lab.on(DECODE, f"systemctl is-active {unit}").stdout.strip() == "active"
    with lab.load(up["router_url"], workers=2, max_seconds=120) as traffic:
        time.sleep(5)
        served_before = traffic.ok
        started = time.monotonic()
        restarted = lab.on(DECODE, "systemctl restart docker && docker version --format '{{.Server.Version}}'")
        seconds = time.monotonic() - started
        time.sleep(10)  # requests keep flowing after dockerd is back
    say(f"dockerd restart on {DECODE}: {seconds:.1f} s; {traffic.ok} requests served ({served_before} before it), "
        f"{len(traffic.failures)} failed")
    assert restarted.returncode == 0, restarted.stderr
    assert traffic.ok > served_before and traffic.failures == [], traffic.failure_summary()
    assert _container(lab, DECODE, ENGINES[DECODE]) == before
    assert lab.on(DECODE, f"systemctl is-active {unit}").stdout.strip() == "active"
    assert lab.on(DECODE, "docker info --format '{{.LiveRestoreEnabled}}'").stdout.strip() == "true"


def test_an_engine_unit_restart_replaces_its_container_and_serves_again(lab, up):
    """`systemctl restart` of the decode unit: ExecStop stops the container, container-run removes it
    (no `--rm`, see above), ExecStartPre and ExecStart start a new one under the same name. Measures
    restart-to-healthy of a simulator engine container; simulator engines compile nothing, so the
    compile-cache comparison of issue 14 applies to real vLLM images only (not measured here)."""
    before = _container(lab, DECODE, ENGINES[DECODE]).split()[0]
    started = time.monotonic()
    restarted = lab.on(DECODE, f"systemctl restart {ENGINES[DECODE]}")
    assert restarted.returncode == 0, restarted.stderr
    engine = f"http://{lab.record.host(DECODE).address}:{DEFAULT_POOL_PORT['decode']}/health"
    while True:
        try:
            with urllib.request.urlopen(engine, timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() - started < 120, f"{engine} not healthy 120 s after the restart"
        time.sleep(0.2)
    healthy_s = time.monotonic() - started
    serving_s = healthy_s + wait_serving(up["router_url"])
    lab.timings.update(restart_to_healthy_s=healthy_s, restart_to_serving_s=serving_s)
    say(f"{ENGINES[DECODE]} unit restart: engine healthy after {healthy_s:.1f} s, served through the router "
        f"after {serving_s:.1f} s")
    after = _container(lab, DECODE, ENGINES[DECODE]).split()
    assert after[0] != before and after[-1] == "true"
    listed = lab.on(DECODE, f"docker ps -a --filter name=^/{ENGINES[DECODE]}$ --format '{{{{.ID}}}}'").stdout.split()
    assert listed == [after[0][:12]], listed  # the old container was removed, not left stopped
