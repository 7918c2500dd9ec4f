"""`xpdctl upgrade` and `xpdctl down` on test hosts: real SSH into network namespaces, units under the
hosts' systemctl, simulator engines (runtime native, server sim) behind the real router and KV agents,
under steady streaming load from this machine. GPUs are simulated at the lowest layer (test hosts).

The fleet is the session's shared serving fleet (tests/served_fleet.py: two prefill hosts, a decode pool
of three hosts, a router host), already up; the tests run in file order, each upgrading what the one
before left, on this module's own copy of the inventory. They change the cluster (and end with `down`),
so the module claims it as changing it: the next user of the fleet brings it back with an `up`.

A release is an engine environment installed on each host: a small wrapper of the interpreter every
host shares read-only (tests/upgrade/upgrade_helpers.write_release), put on the host over SSH at
/opt/xpd-releases/<name>. It exports XPD_RELEASE=<name>, so the running engine's /proc/PID/environ
tells which release it came from. A broken release (installed on one host only) makes the engine on
the decode port exit at start: what a bad build does, which cannot be had otherwise here.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from upgrade_helpers import Load, write_release

from tests.router_reloads import router_reloads
from tests.served_fleet import (ADMIN_TOKEN, AMD, AMD2, AMD3, DECODE_UNITS, FLEET, NVIDIA, NVIDIA2, PREFILL_UNITS,
                                ROUTER, ROUTER_UNIT)  # fmt: skip

pytestmark = pytest.mark.testhosts

D1, D2, D3 = AMD, AMD2, AMD3
DECODES = DECODE_UNITS  # host -> unit, in the pool's order
OTHERS = [*PREFILL_UNITS.items(), (ROUTER, ROUTER_UNIT)] + [
    (h, f"xpd-{FLEET}-kv-agent") for h in (NVIDIA, NVIDIA2, D1, D2, D3)]
ENGINE_HOSTS = [NVIDIA, NVIDIA2, D1, D2, D3]
RELEASES = "/opt/xpd-releases"


class Lab:
    def __init__(self, served, tmp):
        self.served, self.tmp = served, tmp
        self.inventory = tmp / "fleet.yaml"
        shutil.copy(served.inventory, self.inventory)
        self.env, self.state_dir = served.env, served.state_dir

    def xpdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = self.served.xpdctl(*args, "-i", self.inventory)
        if check and done.returncode != 0:
            raise AssertionError(f"xpdctl {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def upgrade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.xpdctl("upgrade", "--pool", "decode", "--timeout", "120", "--drain-timeout", "120", *args,
                           check=check)

    def on(self, host: str, command: str) -> str:
        done = self.served.ssh(host, command)
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
        return self.served.manifest()

    def load(self) -> Load:
        return Load(self.manifest()["router"]["url"], ADMIN_TOKEN, "tiny-gpt-oss")

    def rollout(self) -> dict:
        return json.loads((self.state_dir / "upgrade" / "rollout.json").read_text())


@pytest.fixture(scope="module")
def lab(served_fleet, tmp_path_factory):
    served_fleet.claim("tests/upgrade/test_rollout_testhosts.py", changes=True)
    return Lab(served_fleet, tmp_path_factory.mktemp("upgrade-testhosts"))


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
    assert {h: lab.release_running(h, u) for h, u in PREFILL_UNITS.items()} == {h: "" for h in PREFILL_UNITS}
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
    router_url = lab.manifest()["router"]["url"]
    reloads = router_reloads(router_url, at_least=0)  # the shared fleet's router may have reloaded before
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
    engines = {**DECODES, **PREFILL_UNITS}
    assert {h: lab.release_running(h, u) for h, u in engines.items()} == {h: "release-4" for h in engines}
    router = (ROUTER, ROUTER_UNIT)
    assert lab.main_pid(*router) == others[router]  # never restarted under load: it reloaded its new config
    assert router_reloads(router_url, at_least=reloads + 1) == reloads + 1
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
    assert (f"prefill {NVIDIA} -> decode {D3}: vllm: 0.32.0 vs 0.31.0: different releases: the NIXL handshake "
            "refuses them") in refused.stderr, refused.stderr
    assert f"-> decode {D1}:" not in refused.stderr
    assert {h: lab.main_pid(h, u) for h, u in DECODES.items()} == running and lab.others() == others


def test_down_stops_every_unit_on_every_host(lab):
    listed = [(h, s["name"]) for h, e in lab.manifest()["hosts"].items() for s in e["services"]]
    done = json.loads(lab.xpdctl("down", "-o", "json").stdout)
    assert sorted(done["stopped"]) == sorted(f"{h}:{u}" for h, u in listed)
    for host, unit in listed:
        assert lab.on(host, f"systemctl show {unit}.service | grep ^ActiveState=").strip() == "ActiveState=inactive"
