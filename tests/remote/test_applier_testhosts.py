"""The service applier (pyinfra over real SSH) on test hosts: files with their modes, units under the
hosts' systemctl, restart vs reload, a second apply changing nothing, a dry run changing nothing, a
failing host reported by name while the other is changed. Two test hosts without GPUs (nothing here is
hardware); the service is a small Python process that appends its config to a file on SIGHUP, so a
reload is seen by what the process did, not by what the applier says.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from xpdctl.remote.applier import ApplyOutcome, ApplyRequest, apply_request, run_applier
from xpdctl.remote.executor import apply_where_needed, wanted_unit
from xpdctl.ssh.target import HostLink, SshTarget
from xpdctl.ssh.transport import SshTransport
from xpdctl.testhosts import fleet
from xpdctl.testhosts.layout import fleet_dirs
from xpdctl.units.state import DesiredUnit
from xpdctl.units.unitfile import HostPaths, load_unit

pytestmark = pytest.mark.testhosts

FLEET = "apl"
CLUSTER = "apl"
HOSTS = [f"{FLEET}-1", f"{FLEET}-2"]
UNIT = f"xpd-{CLUSTER}-web"
RELOADS = "/run/xpd-web-reloads"

SERVICE = f"""[Unit]
Description=applier test service

[Service]
Type=simple
EnvironmentFile=/etc/xpdctl/web.env
ExecStart=/usr/bin/python3 /etc/xpdctl/web.py /etc/xpdctl/web.yaml
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
PROGRAM = f"""import signal, sys, time
def reload(*_):
    with open("{RELOADS}", "a") as out:
        out.write(open(sys.argv[1]).read())
signal.signal(signal.SIGHUP, reload)
while True:
    time.sleep(1)
"""


def render(tree: Path, config: str, env: str = "WEB_TOKEN=s3cret\n") -> None:
    """What `render` would write for the two hosts: the unit, its program, env (a secret) and config."""
    for host in HOSTS:
        root = tree / "hosts" / host
        for path, text, mode in ((f"etc/systemd/system/{UNIT}.service", SERVICE, 0o644),
                                 ("etc/xpdctl/web.py", PROGRAM, 0o644), ("etc/xpdctl/web.env", env, 0o600),
                                 ("etc/xpdctl/web.yaml", config, 0o644)):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
            (root / path).chmod(mode)


class Lab:
    def __init__(self, tmp: Path, record):
        self.tmp, self.record = tmp, record
        self.tree = tmp / "rendered"
        dirs = fleet_dirs(FLEET)
        self.known_hosts = dirs.known_hosts
        self.links = {h: HostLink(name=h, address=record.host(h).address, ssh=SshTarget(user="root", key=str(dirs.key)))
                      for h in HOSTS}

    def request(self, *, check: bool = False, known_hosts: Path | None = None) -> ApplyRequest:
        wanted = {}
        for host in HOSTS:
            root = self.tree / "hosts" / host
            unit = load_unit(root / f"etc/systemd/system/{UNIT}.service", HostPaths(root))
            wanted[host] = [wanted_unit(DesiredUnit(unit=unit, host=host, role="web"))]
        return apply_request(CLUSTER, self.tree, known_hosts or self.known_hosts, self.links, wanted, check=check)

    def apply(self, *, check: bool = False) -> ApplyOutcome:
        return run_applier(self.request(check=check), 300)

    def on(self, host: str, command: str) -> str:
        argv = fleet.ssh_argv(FLEET, self.record.host(host).address)
        done = subprocess.run([*argv[:-1], "-o", "BatchMode=yes", argv[-1], command], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (host, command, done.stderr)
        return done.stdout

    def pid(self, host: str) -> str:
        return self.on(host, f"systemctl show -p MainPID {UNIT}.service").strip().removeprefix("MainPID=")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, testhosts_possible):
    tmp = tmp_path_factory.mktemp("applier-testhosts")
    patch = pytest.MonkeyPatch()
    # fleet.create registers the hosts' keys in the cluster's state dir: this test's, not the user's.
    patch.setenv("XPDCTL_STATE_DIR", str(tmp / "state"))
    try:
        record = fleet.create(FLEET, 2, [None, None], subnet="10.88.63.0/24", declare_nics=False)
        lab = Lab(tmp, record)
        render(lab.tree, "greeting: hello\n")
        yield lab
    finally:
        fleet.destroy(FLEET)
        patch.undo()


@pytest.fixture(scope="module")
def first(lab):
    return lab.apply()


def test_first_apply_installs_files_with_their_modes_and_starts_the_unit(lab, first):
    assert {h: (o.status, o.changes.units) for h, o in first.hosts.items()} == {
        h: ("changed", {UNIT: "started"}) for h in HOSTS}
    for host in HOSTS:
        assert lab.on(host, f"systemctl is-active {UNIT}").strip() == "active"
        assert lab.on(host, f"systemctl is-enabled {UNIT}").strip() == "enabled"
        modes = lab.on(host, "stat -c '%a %n' /etc/xpdctl/web.env /etc/xpdctl/web.yaml").split("\n")
        assert modes[:2] == ["600 /etc/xpdctl/web.env", "644 /etc/xpdctl/web.yaml"]


def test_a_second_apply_changes_nothing(lab, first):
    pids = {h: lab.pid(h) for h in HOSTS}
    again = lab.apply()
    assert {h: o.status for h, o in again.hosts.items()} == {h: "ok" for h in HOSTS}
    assert {h: lab.pid(h) for h in HOSTS} == pids


def test_a_dry_run_shows_the_diff_and_changes_nothing(lab, first):
    pids = {h: lab.pid(h) for h in HOSTS}
    render(lab.tree, "greeting: bonjour\n", env="WEB_TOKEN=n3w\n")
    try:
        plan = lab.apply(check=True)
    finally:
        render(lab.tree, "greeting: hello\n")
    host = plan.hosts[HOSTS[0]]
    assert host.status == "changed" and host.changes.units == {UNIT: "restarted"}
    assert "-greeting: hello\n+greeting: bonjour" in host.diffs["/etc/xpdctl/web.yaml"]
    secret = host.diffs["/etc/xpdctl/web.env"]
    assert "secret" in secret and "n3w" not in secret and "s3cret" not in secret
    assert lab.on(HOSTS[0], "cat /etc/xpdctl/web.yaml") == "greeting: hello\n"
    assert {h: lab.pid(h) for h in HOSTS} == pids


def test_a_config_change_reloads_and_an_env_change_restarts(lab, first):
    pids = {h: lab.pid(h) for h in HOSTS}
    render(lab.tree, "greeting: bonjour\n")
    reloaded = lab.apply()
    assert {h: o.changes.units for h, o in reloaded.hosts.items()} == {h: {UNIT: "reloaded"} for h in HOSTS}
    for host in HOSTS:
        assert lab.pid(host) == pids[host]  # the same process, which read its new config on SIGHUP
        assert lab.on(host, f"cat {RELOADS}") == "greeting: bonjour\n"
    render(lab.tree, "greeting: bonjour\n", env="WEB_TOKEN=rotated\n")
    restarted = lab.apply()
    assert {h: o.changes.units for h, o in restarted.hosts.items()} == {h: {UNIT: "restarted"} for h in HOSTS}
    assert all(lab.pid(h) not in (pids[h], "0") for h in HOSTS)


def test_a_failing_host_is_reported_by_name_and_the_other_is_changed(lab, first):
    dark, live = HOSTS
    render(lab.tree, "greeting: hola\n", env="WEB_TOKEN=rotated\n")  # only the config differs from the hosts
    fleet.set_faults(FLEET, dark, reachable=False)
    try:
        outcome = lab.apply()
    finally:
        fleet.set_faults(FLEET, dark, reachable=True)
    assert outcome.hosts[dark].status == "unreachable" and outcome.hosts[dark].error
    assert outcome.problems() == [f"{dark}: {outcome.hosts[dark].error}"]
    assert outcome.hosts[live].status == "changed" and outcome.hosts[live].changes.units == {UNIT: "reloaded"}
    assert lab.on(live, "cat /etc/xpdctl/web.yaml") == "greeting: hola\n"
    # the host that was away gets the change on the next apply, nothing else changes
    again = lab.apply()
    assert again.hosts[dark].changes.units == {UNIT: "reloaded"} and again.hosts[live].status == "ok"


def test_through_the_executor_pyinfra_meets_only_the_hosts_with_a_change(lab, first):
    """The executor reads every host first (OpenSSH, one shared connection per host) and hands pyinfra,
    which opens a new connection to each host it is given, only the hosts with something to change. Seen
    from outside: pyinfra alone gets a fresh known_hosts file, and with accept-new it records there the
    key of every host it connected to."""
    changed, settled = HOSTS
    (lab.tree / "hosts" / changed / "etc/xpdctl/web.yaml").write_text("greeting: salut\n")
    seen = lab.tmp / "pyinfra_known_hosts"
    quick = SshTransport(options={"UserKnownHostsFile": str(lab.known_hosts)})
    outcome = apply_where_needed(quick, lab.request(known_hosts=seen), 300)
    assert outcome.hosts[changed].changes.units == {UNIT: "reloaded"}
    assert outcome.hosts[settled].status == "ok" and outcome.hosts[settled].units == {UNIT: "running"}
    assert lab.on(changed, f"tail -n 1 {RELOADS}") == "greeting: salut\n"
    assert {line.split()[0] for line in seen.read_text().splitlines()} == {lab.links[changed].address}
    before = seen.read_text()
    again = apply_where_needed(quick, lab.request(known_hosts=seen), 300)
    assert {h: o.status for h, o in again.hosts.items()} == {h: "ok" for h in HOSTS}
    assert seen.read_text() == before


def test_a_unit_the_render_dropped_is_stopped_and_its_files_removed(lab, first):
    empty = lab.tmp / "empty"  # a render without the service
    empty.mkdir()
    outcome = run_applier(apply_request(CLUSTER, empty, lab.known_hosts, lab.links, {h: [] for h in HOSTS}), 300)
    assert {h: o.changes.stop for h, o in outcome.hosts.items()} == {h: [UNIT] for h in HOSTS}
    assert f"/etc/systemd/system/{UNIT}.service" in outcome.hosts[HOSTS[0]].changes.remove
    for host in HOSTS:
        assert lab.on(host, f"systemctl is-active {UNIT} || true").strip() != "active"
        assert lab.on(host, f"test -e /etc/systemd/system/{UNIT}.service && echo there || echo gone").strip() == "gone"
