"""`xpdctl upgrade` end to end on a local cluster of simulator engines (one prefill, three decodes,
router with its admin API), under steady streaming load, run by the local executor on 127.0.0.1:
each "host" of the decode pool is one engine instance with its own ports. Zero failed client
requests and the capacity floor (sampled from the router's admin API) are checked throughout."""

from __future__ import annotations

import json
from hashlib import sha256

from upgrade_helpers import write_release

from tests.router_reloads import router_config_sha256, router_reloads


def deployed(cluster) -> dict:
    """name -> manifest entry of every service in the deployed render."""
    manifest = json.loads((cluster.state_dir / "rendered" / "manifest.json").read_text())
    return {s["name"]: s for h in manifest["hosts"].values() for s in h["services"]}


def pids(cluster) -> dict:
    return {s["name"]: s["pid"] for s in json.loads(cluster.xpdctl("status", "-o", "json").stdout)["services"]}


def releases(cluster, role="decode") -> dict:
    return {n: s["command"][0].rsplit("/", 1)[-1] for n, s in deployed(cluster).items() if s["role"] == role}


def test_rolling_upgrade_under_load(sim_cluster, load):
    before = pids(sim_cluster)
    sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-2")))
    dry = json.loads(sim_cluster.upgrade("--dry-run", "-o", "json").stdout)
    assert dry["status"] == "dry-run" and dry["verdict"]["compatible"] is True
    assert [p["name"] for p in dry["phases"]] == ["batch 1", "batch 2", "batch 3"]
    assert pids(sim_cluster) == before  # a dry run changes nothing

    with load() as traffic:
        result = json.loads(sim_cluster.upgrade("-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 2  # pool of 3, --max-unavailable 1
    assert result["status"] == "done" and result["floor"] == 2
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-2" for i in range(3)}
    after = pids(sim_cluster)
    assert all(after[n] != before[n] for n in releases(sim_cluster))
    assert {n: after[n] for n in ("xpd-local-prefill-0", "xpd-local-router", "xpd-local-kv-agent")} == {
        n: before[n] for n in ("xpd-local-prefill-0", "xpd-local-router", "xpd-local-kv-agent")}
    rollout = sim_cluster.rollout()
    assert rollout["status"] == "done" and {i["status"] for i in rollout["instances"].values()} == {"done"}

    again = json.loads(sim_cluster.upgrade("-o", "json").stdout)
    assert again["status"] == "unchanged"
    audit = sim_cluster.audit()
    assert [(a["command"], a["result"]) for a in audit] == [("up", "ok"), ("upgrade", "ok"), ("upgrade", "ok")]
    assert audit[1]["details"]["instances"] == ["xpd-local-decode-0", "xpd-local-decode-1", "xpd-local-decode-2"]
    assert audit[1]["who"] and audit[1]["at"]


def test_failure_on_second_host_rolls_back_and_resume_completes(sim_cluster, load):
    release = sim_cluster.tmp / "release-2"
    write_release(release, broken_port=sim_cluster.decode_ports[1])
    sim_cluster.write(python=str(release))
    with load() as traffic:
        failed = sim_cluster.upgrade(check=False)
        assert failed.returncode == 1
        assert "injected failure" in failed.stderr or "exited while starting" in failed.stderr
        rollout = sim_cluster.rollout()
        assert rollout["status"] == "failed" and "rolled back to the old version" in rollout["error"]
        states = {n: i["status"] for n, i in rollout["instances"].items()}
        assert states == {"xpd-local-decode-0": "done", "xpd-local-decode-1": "failed",
                          "xpd-local-decode-2": "pending"}
        # The old version serves again on the second host, and the router sends it requests.
        assert releases(sim_cluster) == {"xpd-local-decode-0": "release-2", "xpd-local-decode-1": "release-1",
                                         "xpd-local-decode-2": "release-1"}
        status = json.loads(sim_cluster.xpdctl("status", "-o", "json").stdout)
        assert status["healthy"] is True
        # Without --resume, a failed rollout stays failed.
        refused = sim_cluster.upgrade(check=False)
        assert refused.returncode == 1 and "--resume" in refused.stderr

        write_release(release)  # the fix
        resumed = json.loads(sim_cluster.upgrade("--resume", "-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 2
    assert resumed["status"] == "done"
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-2" for i in range(3)}
    assert [(a["command"], a["result"]) for a in sim_cluster.audit()][1:] == [
        ("upgrade", "failed"), ("upgrade", "failed"), ("upgrade", "ok")]


def test_fix_through_the_inventory_reaches_the_hosts_not_upgraded_yet(sim_cluster, load):
    """The first host fails on release-2; the operator's fix is release-3 at another path, given through the
    inventory. --resume renders it again: nothing was upgraded yet, so every decode ends on release-3."""
    release = sim_cluster.tmp / "release-2"
    write_release(release, broken_port=sim_cluster.decode_ports[0])
    sim_cluster.write(python=str(release))
    with load() as traffic:
        failed = sim_cluster.upgrade(check=False)
        assert failed.returncode == 1
        rollout = sim_cluster.rollout()
        assert rollout["status"] == "failed" and rollout["image"] is None
        assert {n: i["status"] for n, i in rollout["instances"].items()} == {
            "xpd-local-decode-0": "failed", "xpd-local-decode-1": "pending", "xpd-local-decode-2": "pending"}

        sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-3")))
        target = sim_cluster.state_dir / "upgrade" / "target"
        recorded = {p: p.read_bytes() for p in [sim_cluster.state_dir / "upgrade" / "rollout.json",
                                                 *sorted(target.rglob("*.service"))]}
        dry = json.loads(sim_cluster.upgrade("--resume", "--dry-run", "-o", "json").stdout)
        assert dry["status"] == "dry-run" and dry["retargeted"] == [f"xpd-local-decode-{i}" for i in range(3)]
        assert {p: p.read_bytes() for p in recorded} == recorded  # the dry run wrote nothing

        resumed = sim_cluster.upgrade("--resume", "-o", "json")
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 2
    assert "the target changed since the rollout started: xpd-local-decode-0, xpd-local-decode-1, " \
           "xpd-local-decode-2 get the inventory's files as they are now" in resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "done"
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-3" for i in range(3)}
    [retarget] = sim_cluster.rollout()["retargets"]
    assert retarget["instances"] == [f"xpd-local-decode-{i}" for i in range(3)]
    assert json.loads(sim_cluster.xpdctl("status", "-o", "json").stdout)["healthy"] is True


def test_fix_through_the_inventory_after_a_host_was_upgraded_is_refused(sim_cluster):
    """The second host fails on release-2 while the first already runs it: release-3 through the inventory
    would leave the pool on two releases, so --resume refuses and says how to go on; doing that completes."""
    release = sim_cluster.tmp / "release-2"
    write_release(release, broken_port=sim_cluster.decode_ports[1])
    sim_cluster.write(python=str(release))
    assert sim_cluster.upgrade(check=False).returncode == 1
    before = (pids(sim_cluster), releases(sim_cluster), sim_cluster.rollout())

    sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-3")))
    for args in (["--dry-run"], []):
        refused = sim_cluster.upgrade("--resume", *args, check=False)
        assert refused.returncode == 2, refused.stderr
        assert (f"xpd-local-decode-0 (the unit's ExecStart program: {release} -> {sim_cluster.tmp / 'release-3'})"
                in refused.stderr)
        assert "two releases" in refused.stderr and "Put the inventory back to what the rollout started with" \
            in refused.stderr and "then run a new upgrade" in refused.stderr
        assert (pids(sim_cluster), releases(sim_cluster), sim_cluster.rollout()) == before

    # What the message says: the inventory back, release-2 fixed where it failed, resume.
    write_release(release)
    sim_cluster.write(python=str(release))
    resumed = json.loads(sim_cluster.upgrade("--resume", "-o", "json").stdout)
    assert resumed["status"] == "done" and resumed["retargeted"] == []
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-2" for i in range(3)}


def test_compat_change_refused_in_place_then_blue_green(sim_cluster, load):
    old_generation = deployed(sim_cluster)["xpd-local-decode-0"]["generation"]
    before = pids(sim_cluster)
    sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-2")), vllm_version="0.33.0")
    refused = sim_cluster.upgrade(check=False)
    assert refused.returncode == 2
    assert "vllm_version: 0.32.0 -> 0.33.0" in refused.stderr and "--blue-green" in refused.stderr
    assert pids(sim_cluster) == before
    assert not (sim_cluster.state_dir / "upgrade" / "rollout.json").exists()

    with load() as traffic:
        result = json.loads(sim_cluster.upgrade("--blue-green", "-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 3  # the new generation is up before the old one leaves
    assert result["status"] == "done" and result["mode"] == "blue-green"
    new_generation = result["verdict"]["new_generation"]
    assert new_generation != old_generation
    services = deployed(sim_cluster)
    assert not [n for n in services if n.endswith("-next")]
    assert {s["generation"] for s in services.values() if s["role"] in ("prefill", "decode")} == {new_generation}
    backends = json.loads(sim_cluster.xpdctl("status", "-o", "json").stdout)
    assert backends["healthy"] is True
    assert pids(sim_cluster)["xpd-local-router"] == before["xpd-local-router"]  # never restarted under load
    # The router reloaded its new config at `record` (SIGHUP, no restart): it runs the file on disk.
    assert router_reloads(sim_cluster.router_url) == 1
    assert router_config_sha256(sim_cluster.router_url) == sha256(
        (sim_cluster.state_dir / "rendered/hosts/local/etc/xpdctl/router.yaml").read_bytes()).hexdigest()


def test_interrupted_rollout_resumes_at_its_step(sim_cluster, load):
    import signal
    import subprocess
    import sys
    import time

    router = pids(sim_cluster)["xpd-local-router"]
    sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-2")))
    state = sim_cluster.state_dir / "upgrade" / "rollout.json"
    with load() as traffic:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xpdctl", "upgrade", "-i", str(sim_cluster.inventory), "--pool", "decode",
             "--timeout", "60", "--alt-port-offset", str(sim_cluster.alt_offset)],
            env=sim_cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # stop it like a lost terminal would, mid batch 2
            if state.exists() and sim_cluster.rollout()["phase"] == 1 and sim_cluster.rollout()["step"] >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stopped = sim_cluster.rollout()
        assert stopped["status"] == "running" and stopped["phase"] == 1
        refused = sim_cluster.upgrade(check=False)
        assert refused.returncode == 1 and "is running at batch 2" in refused.stderr
        resumed = json.loads(sim_cluster.upgrade("--resume", "-o", "json").stdout)
    assert resumed["status"] == "done"
    assert traffic.failures == [] and min(traffic.serving) >= 2, traffic.failure_summary()
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-2" for i in range(3)}
    assert json.loads(sim_cluster.xpdctl("status", "-o", "json").stdout)["healthy"] is True
    assert pids(sim_cluster)["xpd-local-router"] == router


def test_prefill_pool_of_one_upgrades_through_a_surge_instance(sim_cluster, load):
    before = pids(sim_cluster)
    sim_cluster.write(python=str(write_release(sim_cluster.tmp / "release-2")))
    with load() as traffic:
        result = json.loads(sim_cluster.xpdctl(
            "upgrade", "--pool", "prefill", "--timeout", "60", "--alt-port-offset", str(sim_cluster.alt_offset),
            "-o", "json").stdout)
    assert [p["name"] for p in result["phases"]] == ["surge up", "batch 1", "surge down"]
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert releases(sim_cluster, "prefill") == {"xpd-local-prefill-0": "release-2"}
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-1" for i in range(3)}
    after = pids(sim_cluster)
    assert after["xpd-local-prefill-0"] != before["xpd-local-prefill-0"]
    assert not [n for n in after if n.endswith("-next")]
    assert {n: after[n] for n in after if "decode" in n} == {n: before[n] for n in before if "decode" in n}


def test_blue_green_failure_takes_the_green_generation_away(sim_cluster, load):
    before = pids(sim_cluster)
    release = sim_cluster.tmp / "release-2"
    # The new release fails on the second decode's green instance (its port plus the offset).
    write_release(release, broken_port=sim_cluster.decode_ports[1] + sim_cluster.alt_offset)
    sim_cluster.write(python=str(release), vllm_version="0.33.0")
    with load() as traffic:
        failed = sim_cluster.upgrade("--blue-green", check=False)
        assert failed.returncode == 1
        rollout = sim_cluster.rollout()
        assert rollout["status"] == "failed" and rollout["error"].startswith("green up: health")
        # The old generation serves as before, the green one is gone from the router and the host.
        assert pids(sim_cluster) == before
        assert not [n for n in deployed(sim_cluster) if n.endswith("-next")]
        write_release(release)
        resumed = json.loads(sim_cluster.upgrade("--blue-green", "--resume", "-o", "json").stdout)
    assert traffic.failures == [] and min(traffic.serving) >= 3, traffic.failure_summary()
    assert resumed["status"] == "done"
    assert releases(sim_cluster) == {f"xpd-local-decode-{i}": "release-2" for i in range(3)}
    assert releases(sim_cluster, "prefill") == {"xpd-local-prefill-0": "release-2"}
