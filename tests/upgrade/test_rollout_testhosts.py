"""`xpdctl upgrade` and `xpdctl down` on test hosts: real SSH into network namespaces, units under the
hosts' systemctl, simulator engines (runtime native, server sim) behind the real router and KV agents,
under steady streaming load from this machine. GPUs are simulated at the lowest layer (test hosts).

The fleet: one prefill host, a decode pool of three hosts, a router host; one `xpdctl up` for the
module, then the tests in file order, each upgrading what the one before left.

A release is an engine environment installed on each host: a small wrapper of the interpreter every
host shares read-only (tests/upgrade/upgrade_helpers.write_release), put on the host over SSH at
/opt/xpd-releases/<name>. It exports XPD_RELEASE=<name>, so the running engine's /proc/PID/environ
tells which release it came from. A broken release (installed on one host only) makes the engine on
the decode port exit at start: what a bad build does, which cannot be had otherwise here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from upgrade_helpers import TOKEN, Load, write_release

from tests.router_reloads import router_reloads

from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import GpuDecl

pytestmark = pytest.mark.testhosts

FLEET = "upg"
PREFILL, D1, D2, D3, ROUTER = (f"{FLEET}-{i}" for i in range(1, 6))
DECODES = {D1: f"xpd-{FLEET}-decode-0", D2: f"xpd-{FLEET}-decode-1", D3: f"xpd-{FLEET}-decode-2"}
OTHERS = [(PREFILL, f"xpd-{FLEET}-prefill-0"), (ROUTER, f"xpd-{FLEET}-router")] + [
    (h, f"xpd-{FLEET}-kv-agent") for h in (PREFILL, D1, D2, D3)]
ENGINE_HOSTS = [PREFILL, D1, D2, D3]
RELEASES = "/opt/xpd-releases"


class Lab:
    def __init__(self, tmp: Path, record, inventory: Path):
        self.tmp, self.record, self.inventory = tmp, record, inventory
        self.env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"), XPDCTL_ROUTER_ADMIN_TOKEN=TOKEN)
        self.state_dir = tmp / "state" / FLEET

    def xpdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(self.inventory)], env=self.env,
                              capture_output=True, text=True, timeout=1200)
        if check and done.returncode != 0:
            raise AssertionError(f"xpdctl {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def upgrade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.xpdctl("upgrade", "--pool", "decode", "--timeout", "120", "--drain-timeout", "120", *args,
                           check=check)

    def on(self, host: str, command: str) -> str:
        argv = fleet.ssh_argv(FLEET, self.record.host(host).address)
        argv[-1:-1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        done = subprocess.run([*argv, command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (host, command, done.stderr)
        return done.stdout

    def edit(self, **engine) -> None:
        data = yaml.safe_load(self.inventory.read_text())
        data["engine"].update(engine)
        self.inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    def install_release(self, name: str, hosts: list[str], broken_port: int | None = None) -> str:
        text = write_release(self.tmp / name, broken_port).read_text()
        text = text.replace("#!/bin/sh\n", f"#!/bin/sh\nXPD_RELEASE={name}; export XPD_RELEASE\n", 1)
        path = f"{RELEASES}/{name}"
        for host in hosts:
            self.on(host, f"mkdir -p {RELEASES} && printf '%s' {shlex.quote(text)} > {path} && chmod +x {path}")
        return path

    def main_pid(self, host: str, unit: str) -> int:
        return int(self.on(host, f"systemctl show -p MainPID {unit}.service").strip().removeprefix("MainPID="))

    def release_running(self, host: str, unit: str) -> str:
        """The release the unit's running process came from ("" for the shared interpreter itself)."""
        pid = self.main_pid(host, unit)
        assert pid > 0, (host, unit, "not running")
        environ = self.on(host, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        return next((line.split("=", 1)[1] for line in environ.splitlines() if line.startswith("XPD_RELEASE=")), "")

    def others(self) -> dict:
        return {(h, u): self.main_pid(h, u) for h, u in OTHERS}

    def manifest(self) -> dict:
        return json.loads((self.state_dir / "rendered" / "manifest.json").read_text())

    def load(self) -> Load:
        return Load(self.manifest()["router"]["url"], TOKEN, "tiny-gpt-oss")

    def rollout(self) -> dict:
        return json.loads((self.state_dir / "upgrade" / "rollout.json").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory, testhosts_possible):
    tmp = tmp_path_factory.mktemp("upgrade-testhosts")
    patch = pytest.MonkeyPatch()
    # fleet.create registers the hosts' keys in the cluster's state dir, where `up` and SSH look.
    patch.setenv("XPDCTL_STATE_DIR", str(tmp / "state"))
    amd = GpuDecl(vendor="amd", count=1)
    try:
        record = fleet.create(FLEET, 5, [GpuDecl(vendor="nvidia", count=1), amd, amd, amd, None],
                              subnet="10.88.62.0/24", inventory_path=tmp / "fleet.yaml", declare_nics=False)
        lab = Lab(tmp, record, tmp / "fleet.yaml")
        lab.xpdctl("up", "--timeout", "600")
        yield lab
    finally:
        fleet.destroy(FLEET)
        patch.undo()


def test_rolling_upgrade_of_the_decode_pool_under_load(lab):
    others = lab.others()
    lab.edit(python=lab.install_release("release-2", ENGINE_HOSTS))
    dry = json.loads(lab.upgrade("--dry-run", "-o", "json").stdout)
    assert [p["name"] for p in dry["phases"]] == ["batch 1", "batch 2", "batch 3"]

    with lab.load() as traffic:
        result = json.loads(lab.upgrade("-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert traffic.serving and min(traffic.serving) >= 2  # pool of 3, --max-unavailable 1
    assert result["status"] == "done" and result["floor"] == 2
    assert {h: lab.release_running(h, u) for h, u in DECODES.items()} == {h: "release-2" for h in DECODES}
    assert lab.others() == others  # prefill, router and KV agents never restarted
    assert lab.release_running(PREFILL, f"xpd-{FLEET}-prefill-0") == ""
    # What ran a unit is recorded on its host: a second run finds nothing to do.
    assert json.loads(lab.upgrade("-o", "json").stdout)["status"] == "unchanged"
    assert lab.xpdctl("status", check=False).returncode == 0


def test_failure_on_the_second_decode_host_rolls_back_then_resume_completes(lab):
    port = next(s["port"] for s in lab.manifest()["hosts"][D2]["services"] if s["name"] == DECODES[D2])
    good = [h for h in ENGINE_HOSTS if h != D2]
    lab.edit(python=lab.install_release("release-3", good))
    lab.install_release("release-3", [D2], broken_port=port)
    with lab.load() as traffic:
        failed = lab.upgrade(check=False)
        assert failed.returncode == 1, failed.stderr[-3000:]
        assert DECODES[D2] in failed.stderr
        rollout = lab.rollout()
        assert rollout["status"] == "failed" and "rolled back to the old version" in rollout["error"]
        assert {n: i["status"] for n, i in rollout["instances"].items()} == {
            DECODES[D1]: "done", DECODES[D2]: "failed", DECODES[D3]: "pending"}
        # The old release serves again on the second host.
        assert {h: lab.release_running(h, u) for h, u in DECODES.items()} == {
            D1: "release-3", D2: "release-2", D3: "release-2"}
        assert lab.on(D2, f"systemctl is-active {DECODES[D2]}.service").strip() == "active"
        refused = lab.upgrade(check=False)
        assert refused.returncode == 1 and "--resume" in refused.stderr

        lab.install_release("release-3", [D2])  # the fix
        resumed = json.loads(lab.upgrade("--resume", "-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 2
    assert resumed["status"] == "done"
    assert {h: lab.release_running(h, u) for h, u in DECODES.items()} == {h: "release-3" for h in DECODES}


def test_compat_change_refused_in_place_then_blue_green(lab):
    others = lab.others()
    lab.edit(python=lab.install_release("release-4", ENGINE_HOSTS), vllm_version="0.33.0")
    refused = lab.upgrade(check=False)
    assert refused.returncode == 2 and "vllm_version: 0.32.0 -> 0.33.0" in refused.stderr
    assert "--blue-green" in refused.stderr
    assert lab.others() == others

    with lab.load() as traffic:
        result = json.loads(lab.upgrade("--blue-green", "-o", "json").stdout)
    assert traffic.failures == [] and traffic.ok > 0, traffic.failure_summary()
    assert min(traffic.serving) >= 3  # the new generation is up before the old one leaves
    assert result["status"] == "done" and result["mode"] == "blue-green"
    engines = {**DECODES, PREFILL: f"xpd-{FLEET}-prefill-0"}
    assert {h: lab.release_running(h, u) for h, u in engines.items()} == {h: "release-4" for h in engines}
    router = (ROUTER, f"xpd-{FLEET}-router")
    assert lab.main_pid(*router) == others[router]  # never restarted under load: it reloaded its new config
    assert router_reloads(lab.manifest()["router"]["url"]) == 1
    for host in ENGINE_HOSTS:  # the green instances are gone, files and all
        assert "-next" not in lab.on(host, "ls /etc/systemd/system /etc/xpdctl")


def test_a_new_decode_stack_of_another_release_is_refused_before_anything_restarts(lab):
    """release-5's interpreter on D3 is a venv layered on the test venv whose vllm/_version.py says
    0.31.0 (the real vLLM code, another release string): the upgrade reads the decode hosts' new stack
    over SSH before its first step and refuses, naming the pair and the factor; nothing restarted."""
    others, previous = lab.others(), yaml.safe_load(lab.inventory.read_text())["engine"]["python"]
    running = {h: lab.main_pid(h, u) for h, u in DECODES.items()}
    path = lab.install_release("release-5", ENGINE_HOSTS)
    repo = Path(__file__).resolve().parents[2]
    lab.on(D3, f"cd {repo} && {sys.executable} -c 'from pathlib import Path; from tests.vllm_tier.layered_env "
               "import layered_env; layered_env(Path(\"/opt/xpd-old\"), \"0.31.0\")'")
    lab.on(D3, f"sed -i 's#exec {sys.executable}#exec /opt/xpd-old/bin/python#' {path}")
    lab.edit(python=path)
    try:
        refused = lab.upgrade(check=False)
    finally:
        lab.edit(python=previous)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "nothing was restarted" in refused.stderr
    assert (f"prefill {PREFILL} -> decode {D3}: vllm: 0.32.0 vs 0.31.0: different releases: the NIXL handshake "
            "refuses them") in refused.stderr, refused.stderr
    assert f"-> decode {D1}:" not in refused.stderr
    assert {h: lab.main_pid(h, u) for h, u in DECODES.items()} == running and lab.others() == others


def test_down_stops_every_unit_on_every_host(lab):
    listed = [(h, s["name"]) for h, e in lab.manifest()["hosts"].items() for s in e["services"]]
    done = json.loads(lab.xpdctl("down", "-o", "json").stdout)
    assert sorted(done["stopped"]) == sorted(f"{h}:{u}" for h, u in listed)
    for host, unit in listed:
        assert lab.on(host, f"systemctl show {unit}.service | grep ^ActiveState=").strip() == "ActiveState=inactive"
