"""`xpdctl up` and `xpdctl status` end to end on test hosts: real Ansible and real SSH into network
namespaces, simulator engines (runtime native, server sim) behind the real router and KV agents.

The fleet is the session's shared serving fleet (tests/served_fleet.py: two NVIDIA-like prefill hosts,
three AMD-like decode hosts, a router host; GPUs and vendor packages simulated at the lowest layer). It
came up the way the first tests here assert: a first `up` on fresh hosts while NVIDIA2's driver package
fails to install and AMD2 is unreachable (faults injected the way test hosts offer them), then a re-run.
The tests after those use the serving cluster and put back what they change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.served_fleet import AMD, AMD2, AMD3, DECODE_UNITS, FLEET, NVIDIA, NVIDIA2, PREFILL_UNITS, ROUTER
from xpdctl.testhosts import fleet

DOCS = Path(__file__).resolve().parents[2] / "docs"
pytestmark = pytest.mark.testhosts

ENGINE_UNITS = {**PREFILL_UNITS, **DECODE_UNITS}
HOSTS = (NVIDIA, AMD, ROUTER, NVIDIA2, AMD2, AMD3)


@pytest.fixture(scope="module")
def lab(served_fleet):
    """The shared serving fleet, as its first `up`s left it (this module changes nothing it does not put back)."""
    served_fleet.claim("tests/deploy/test_up_testhosts.py", changes=False)
    return served_fleet


def _json(done) -> dict:
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def first_up(lab):
    """`up` on fresh hosts while NVIDIA2's driver package fails to install and AMD2 is unreachable."""
    return lab.first_up, _json(lab.first_up)


def test_a_failing_package_and_an_unreachable_host_fail_alone(first_up):
    done, result = first_up
    assert done.returncode == 1, done.stderr[-3000:]
    hosts = result["hosts"]
    failed = hosts[NVIDIA2]["provision"]
    assert failed["status"] == "failed" and failed["failure"]["role"] == "nvidia_driver"
    assert "could not insert 'nvidia'" in failed["failure"]["message"]
    dark = hosts[AMD2]["provision"]
    assert dark["status"] == "unreachable" and "10.88.60.15" in dark["failure"]["message"]
    assert result["retry"] == f"{NVIDIA2},{AMD2}"
    assert f"--limit {NVIDIA2},{AMD2}" in done.stderr
    for name in (NVIDIA, AMD, ROUTER, AMD3):
        assert hosts[name]["provision"]["status"] == "changed" and hosts[name]["provision"]["failed"] == 0
        assert {s["health"] for s in hosts[name]["services"]} == {"healthy"}, hosts[name]["services"]
    assert {s["health"] for s in hosts[NVIDIA2]["services"]} == {f"not checked: provisioning failed on {NVIDIA2}"}


def test_the_hosts_that_finished_serve_through_the_router(first_up):
    _, result = first_up
    pairs = [(p["prefill"], p["decode"], p["ok"]) for p in result["kv_pairs"]]
    assert pairs == [(ENGINE_UNITS[NVIDIA], ENGINE_UNITS[decode], True) for decode in (AMD, AMD3)]
    assert result["reached"] == "done" and result["smoke"]["completion_tokens"] > 0


def test_progress_is_shown_per_host_and_role_as_it_happens(first_up):
    done, _ = first_up
    lines = done.stderr.splitlines()
    for host, role in ((NVIDIA, "nvidia_driver"), (AMD, "amd_rocm"), (ROUTER, "services"), (NVIDIA, "services")):
        assert any(line.split() == [host, ">", role] for line in lines), (host, role, done.stderr[-3000:])
    assert any(line.startswith(NVIDIA2) and "FAILED" in line for line in lines)
    assert any(line.startswith(AMD2) and "UNREACHABLE" in line for line in lines)


@pytest.fixture(scope="module")
def resumed(lab, first_up):
    """The re-run once both hosts were fixed."""
    return lab.resumed, _json(lab.resumed)


def test_a_rerun_resumes_and_brings_up_the_hosts_that_failed(resumed):
    done, result = resumed
    assert done.returncode == 0 and result["ok"], done.stderr[-3000:]
    hosts = result["hosts"]
    assert hosts[NVIDIA2]["provision"]["changed"] > 0 and hosts[AMD2]["provision"]["changed"] > 0
    for name in (NVIDIA, AMD, ROUTER, AMD3):
        assert hosts[name]["provision"]["status"] in ("ok", "changed") and hosts[name]["provision"]["failed"] == 0
    sick = [(s["host"], s["name"], s["health"]) for h in hosts.values() for s in h["services"] if s["health"] != "healthy"]
    assert not sick
    assert len(result["kv_pairs"]) == 6 and all(p["ok"] for p in result["kv_pairs"])
    assert result["smoke"]["text"]


def test_every_service_is_active_on_its_host(lab, resumed):
    units = {name: [s["name"] for s in h["services"]] for name, h in resumed[1]["hosts"].items()}
    assert units[ROUTER] == [f"xpd-{FLEET}-router"]
    for host, names in units.items():
        for unit in names:
            done = lab.ssh(host, f"systemctl is-active {unit}")
            assert done.stdout.strip() == "active", (host, unit, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def again(lab, resumed):
    return lab.xpdctl("up", "-i", lab.inventory)


def test_a_second_up_changes_nothing(again):
    assert again.returncode == 0, again.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in again.stdout.splitlines() if line.startswith(f"{FLEET}-")}
    # host, provision, ok, changed, failed, unreachable, services...
    assert {host: (row[1], row[3], row[4]) for host, row in rows.items()} == {
        host: ("ok", "0", "0") for host in HOSTS
    }
    assert f"cluster {FLEET} is up" in again.stdout and "smoke request through" in again.stdout


def test_status_json_follows_the_schema_and_is_healthy(lab, again):
    done = lab.xpdctl("status", "-i", lab.inventory, "-o", "json")
    status = _json(done)
    schema = json.loads((DOCS / "status-schema.json").read_text())
    jsonschema.validate(status, schema)
    errors = [p for p in status["problems"] if p["severity"] == "error"]
    assert done.returncode == 0 and status["healthy"] and not errors, errors
    hosts = {h["name"]: h for h in status["hosts"]}
    assert all(h["reachable"] and h["drift_checked"] and not h["drift"] for h in hosts.values())
    assert [g["name"] for g in hosts[NVIDIA]["accelerators"]["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 2
    assert len(hosts[AMD]["accelerators"]["gpus"]) == 2
    assert all(e["healthy"] for h in hosts.values() for e in h["engines"])
    assert hosts[ROUTER]["routers"][0]["healthy"]
    assert all(p["ok"] for p in hosts[NVIDIA]["kv_agents"][0]["pairs"])


def test_status_table_is_one_screen_and_says_healthy(lab, again):
    done = lab.xpdctl("status", "-i", lab.inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cluster {FLEET}: healthy" in done.stdout
    assert all(host in done.stdout for host in HOSTS)


def test_status_exits_non_zero_when_a_service_is_down(lab, again):
    unit = ENGINE_UNITS[AMD2]
    lab.ssh(AMD2, f"systemctl stop {unit}")
    try:
        done = lab.xpdctl("status", "-i", lab.inventory, "-o", "json")
    finally:
        lab.ssh(AMD2, f"systemctl start {unit}")
    status = _json(done)
    assert done.returncode == 3 and not status["healthy"]
    whats = [p["what"] for p in status["problems"] if p["severity"] == "error" and p["host"] == AMD2]
    assert any(unit in what for what in whats), status["problems"]
    assert "not healthy" in done.stderr


def test_preflight_in_up_catches_a_gpu_count_that_differs_from_the_inventory(lab, again):
    fleet.set_faults(FLEET, NVIDIA, gpu_count=1)
    try:
        done = lab.xpdctl("up", "-i", lab.inventory, "--check", "--limit", f"{NVIDIA},{ROUTER}")
    finally:
        fleet.set_faults(FLEET, NVIDIA, gpu_count=2)
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith(NVIDIA))
    assert row.split()[1] == "failed" and "preflight" in row and "found 1 x nvidia" in row, done.stdout
    router_row = next(line for line in done.stdout.splitlines() if line.startswith(ROUTER))
    assert router_row.split()[1] == "ok"


def _point_engines_at(lab, python_of: dict[str, str]) -> None:
    """Each engine host's /opt/xpd-stack/bin/python: a wrapper that runs the given interpreter there."""
    for host, python in python_of.items():
        done = lab.ssh(host, "mkdir -p /opt/xpd-stack/bin && printf '#!/bin/sh\\nexec %s \"$@\"\\n' "
                   f"{python} > /opt/xpd-stack/bin/python && chmod +x /opt/xpd-stack/bin/python")
        assert done.returncode == 0, done.stderr


def test_a_host_whose_vllm_reports_another_release_is_refused_before_any_engine_restarts(lab, again, tmp_path):
    """The inventory moves every engine to /opt/xpd-stack/bin/python; on AMD2 that interpreter's vLLM
    reports 0.31.0 (a venv layered on the test venv, its vllm/_version.py changed: the real vLLM code,
    another release string). `up` reads every host's stack over SSH first and refuses the pairs with
    AMD2 (simulator engines: the stacks are compared with each other, not with the declared label);
    the engines' units on the hosts are still the ones the last `up` wrote."""
    repo = Path(__file__).resolve().parents[2]
    made = lab.ssh(AMD2, f"cd {repo} && {sys.executable} -c 'from pathlib import Path; "
               "from tests.vllm_tier.layered_env import layered_env; layered_env(Path(\"/opt/xpd-old\"), \"0.31.0\")'")
    assert made.returncode == 0, made.stderr
    _point_engines_at(lab, {h: sys.executable for h in ENGINE_UNITS} | {AMD2: "/opt/xpd-old/bin/python"})
    moved = tmp_path / "moved.yaml"
    data = yaml.safe_load(lab.inventory.read_text())
    data["engine"]["python"] = "/opt/xpd-stack/bin/python"
    moved.write_text(yaml.safe_dump(data))
    done = lab.xpdctl("up", "-i", moved)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "nothing was changed" in done.stderr
    assert (f"prefill {NVIDIA} -> decode {AMD2}: vllm: 0.32.0 vs 0.31.0: different releases: the NIXL "
            "handshake refuses them" in done.stderr), done.stderr
    assert f"-> decode {AMD}:" not in done.stderr
    for host, unit in ENGINE_UNITS.items():
        unit_file = lab.ssh(host, f"cat /etc/systemd/system/{unit}.service").stdout
        assert unit_file and "/opt/xpd-stack" not in unit_file, (host, unit_file)
