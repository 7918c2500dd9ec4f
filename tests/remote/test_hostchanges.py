"""What one apply changes on a host (pure decisions; the applier on test hosts is
tests/remote/test_applier_testhosts.py): from a real render of the lab inventory and host snapshots."""

from __future__ import annotations

import hashlib

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.observe.drift import ExpectedFile, host_files
from xpdctl.plan import build_plan
from xpdctl.remote.applier import HostRequest, planned
from xpdctl.remote.executor import wanted_unit
from xpdctl.remote.hostchanges import HostFile, HostSnapshot, WantedUnit, host_changes, stop_rank
from xpdctl.render import read_tree, render_files, write_tree
from xpdctl.ssh.target import HostLink, SshTarget
from xpdctl.units.rendered import rendered_services

RUNNING = {"ActiveState": "active", "SubState": "running", "UnitFileState": "enabled", "LoadState": "loaded"}


@pytest.fixture
def lab(tmp_path, lab_data, write_inventory):
    """(rendered tree, host -> wanted units, host -> expected files)."""
    loaded = load_inventory(write_inventory(lab_data))
    tree = tmp_path / "rendered"
    write_tree(render_files(build_plan(loaded, {"HF_TOKEN": "hf_secret"})), tree)
    wanted: dict = {}
    for s in rendered_services(tree, unique_names=False):
        wanted.setdefault(s.desired.host, []).append(wanted_unit(s.desired))
    files = read_tree(tree)
    return tree, wanted, {h: host_files(files, h) for h in wanted}


def snapshot_of(expected, units=(), state=RUNNING, edits=None) -> HostSnapshot:
    """A host holding ``expected``, edited (path -> other content, mode kept), running ``units``."""
    files = {p: HostFile(sha256=f.sha256, mode=f.mode) for p, f in expected.items()}
    for path, content in (edits or {}).items():
        files[path] = HostFile(sha256=hashlib.sha256(content.encode()).hexdigest(), mode=files[path].mode)
    return HostSnapshot(units={u: dict(state) for u in units}, files=files)


def test_the_routers_config_alone_is_reloaded_its_unit_and_env_restart(lab):
    _, wanted, _ = lab
    [router] = wanted["gw-01"]
    # a container's --env-file and the program that runs it (container-run) are read at start only: a
    # change restarts the router
    assert set(router.files) == {"/etc/systemd/system/xpd-lab-router.service", "/etc/xpdctl/xpd-lab-router.env",
                                 "/etc/xpdctl/container-run"}
    assert router.reload_files == ["/etc/xpdctl/router.yaml"]
    agent = next(u for u in wanted["h100-01"] if u.role == "kv-agent")
    assert set(agent.files) == {"/etc/systemd/system/xpd-lab-kv-agent.service", "/etc/xpdctl/xpd-lab-kv-agent.env",
                                "/etc/xpdctl/kv-agent.yaml", "/etc/xpdctl/container-run"} and agent.reload_files == []


def test_a_fresh_host_gets_every_file_and_starts_engines_first(lab):
    _, wanted, expected = lab
    changes = host_changes(wanted["h100-01"], expected["h100-01"], HostSnapshot())
    assert changes.write == sorted(expected["h100-01"]) and changes.daemon_reload
    assert list(changes.units) == ["xpd-lab-prefill-0", "xpd-lab-kv-agent"]
    assert set(changes.units.values()) == {"started"} and changes.enable == list(changes.units)


def test_a_host_that_holds_the_render_needs_nothing(lab):
    _, wanted, expected = lab
    names = [u.name for u in wanted["gw-01"]]
    changes = host_changes(wanted["gw-01"], expected["gw-01"], snapshot_of(expected["gw-01"], names))
    assert not changes.needed() and changes.units == {"xpd-lab-router": "unchanged"}


def test_router_config_changed_reloads_env_changed_restarts(lab):
    _, wanted, expected = lab
    gw, names = expected["gw-01"], ["xpd-lab-router"]
    config = host_changes(wanted["gw-01"], gw, snapshot_of(gw, names, edits={"/etc/xpdctl/router.yaml": "old: 1\n"}))
    assert config.units == {"xpd-lab-router": "reloaded"} and config.write == ["/etc/xpdctl/router.yaml"]
    assert not config.daemon_reload  # no unit file changed
    env = host_changes(wanted["gw-01"], gw, snapshot_of(gw, names, edits={"/etc/xpdctl/xpd-lab-router.env": "A=1\n"}))
    assert env.units == {"xpd-lab-router": "restarted"}


def test_a_stopped_or_failed_unit_with_the_renders_files_starts_and_a_changed_one_restarts(lab):
    _, wanted, expected = lab
    gw = expected["gw-01"]
    failed = dict(RUNNING, ActiveState="failed", SubState="failed")
    assert host_changes(wanted["gw-01"], gw, snapshot_of(gw, ["xpd-lab-router"], failed)).units == {
        "xpd-lab-router": "started"}
    changed = snapshot_of(gw, ["xpd-lab-router"], failed, edits={"/etc/xpdctl/router.yaml": "old: 1\n"})
    assert host_changes(wanted["gw-01"], gw, changed).units == {"xpd-lab-router": "restarted"}


def test_a_secret_file_with_the_wrong_mode_is_written_again(lab):
    _, wanted, expected = lab
    gw = expected["gw-01"]
    snapshot = snapshot_of(gw, ["xpd-lab-router"])
    env = "/etc/xpdctl/xpd-lab-router.env"
    assert gw[env].mode == 0o600
    snapshot.files[env] = HostFile(sha256=gw[env].sha256, mode=0o644)
    changes = host_changes(wanted["gw-01"], gw, snapshot)
    assert changes.write == [env] and changes.units == {"xpd-lab-router": "unchanged"}


def test_units_and_files_the_render_dropped_stop_router_first_and_go(lab):
    _, wanted, expected = lab
    gw = expected["gw-01"]
    snapshot = snapshot_of(gw, ["xpd-lab-router", "xpd-lab-decode-3", "xpd-lab-kv-agent"])
    snapshot.files["/etc/systemd/system/xpd-lab-decode-3.service"] = HostFile(sha256="x", mode=0o644)
    changes = host_changes([], gw, snapshot)
    assert changes.stop == ["xpd-lab-router", "xpd-lab-kv-agent", "xpd-lab-decode-3"]
    assert "/etc/systemd/system/xpd-lab-decode-3.service" in changes.remove and changes.daemon_reload
    assert [stop_rank(u) for u in changes.stop] == [0, 1, 2]


def test_a_running_unit_that_is_not_enabled_is_enabled_and_left_running(lab):
    _, wanted, expected = lab
    gw = expected["gw-01"]
    changes = host_changes(wanted["gw-01"], gw, snapshot_of(gw, ["xpd-lab-router"], dict(RUNNING, UnitFileState="disabled")))
    assert changes.units == {"xpd-lab-router": "unchanged"} and changes.enable == ["xpd-lab-router"] and changes.needed()


def test_an_apply_of_listed_units_only_leaves_the_hosts_other_units_and_files_alone(lab):
    """The router handoff's first apply (deploy/handoff.py): a stand-in router starts beside the router,
    which keeps running on its files; a unit and a file the render does not have stay too."""
    _, _, expected = lab
    gw = expected["gw-01"]
    unit, env = "/etc/systemd/system/xpd-lab-router-handoff.service", "/etc/xpdctl/xpd-lab-router-handoff.env"
    stand_in = WantedUnit(name="xpd-lab-router-handoff", role="router", files=[unit, env],
                          reload_files=["/etc/xpdctl/router.yaml"])
    wanted = {**gw, unit: ExpectedFile(sha256="1" * 64, mode=0o644), env: ExpectedFile(sha256="2" * 64, mode=0o600)}
    host = snapshot_of(gw, ["xpd-lab-router", "xpd-lab-gone"])
    host.files["/etc/xpdctl/gone.env"] = HostFile(sha256="3" * 64, mode=0o600)
    link = HostLink(name="gw-01", address="10.0.0.5", ssh=SshTarget())

    listed = planned(HostRequest(link=link, units=[stand_in], listed_only=True), host, wanted).changes
    assert listed.stop == [] and listed.remove == [] and listed.write == [unit, env]
    assert listed.units == {"xpd-lab-router-handoff": "started"} and listed.daemon_reload
    # The same request as a whole host's wanted state stops and removes what it does not list.
    whole = planned(HostRequest(link=link, units=[stand_in]), host, wanted).changes
    assert whole.stop == ["xpd-lab-router", "xpd-lab-gone"] and whole.remove == ["/etc/xpdctl/gone.env"]
