"""The local executor with real processes: small Python services stand in for the engines."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from xpdctl.local.executor import LocalExecutor
from xpdctl.local.statefiles import live_supervisor, proc_alive
from xpdctl.units.rendered import rendered_services

# A service that records its environment and argv, forks a worker (as vLLM forks its engine core)
# and sleeps.
SERVICE = r"""
import json, os, sys, time
out = sys.argv[1]
with open(out, "w") as f:
    json.dump({"env": dict(os.environ), "argv": sys.argv, "pid": os.getpid()}, f)
if os.fork() == 0:
    with open(out + ".worker", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
time.sleep(3600)
"""


def unit_text(name, out, restart="on-failure", after="", pre=""):
    return f"""[Unit]
Description={name}
After={after}

[Service]
EnvironmentFile=/etc/xpdctl/{name}.env
Environment=UNIT={name}
{pre}
ExecStart={sys.executable} {out.parent / "service.py"} {out}
Restart={restart}
RestartSec=0.2
"""


def make_tree(tree: Path, units: dict[str, dict]) -> None:
    """A rendered tree like `render` writes: manifest.json + hosts/<host>/etc/{systemd/system,xpdctl}."""
    host = tree / "hosts" / "local"
    (host / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    (host / "etc/xpdctl").mkdir(parents=True, exist_ok=True)
    (tree / "service.py").write_text(SERVICE)
    services = []
    for name, spec in units.items():
        (host / f"etc/xpdctl/{name}.env").write_text(spec.get("env", "A=1\n"))
        (host / f"etc/systemd/system/{name}.service").write_text(
            unit_text(name, tree / f"{name}.out", spec.get("restart", "on-failure"), spec.get("after", ""),
                      spec.get("pre", ""))
        )
        services.append({"name": name, "role": spec.get("role", "engine"), "unit": f"hosts/local/etc/systemd/system/{name}.service"})
    (tree / "manifest.json").write_text(json.dumps({"cluster": "t", "hosts": {"local": {"address": "127.0.0.1", "services": services}}}))


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {predicate}")


def read_out(tree, name):
    path = tree / f"{name}.out"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


alive = proc_alive


@pytest.fixture
def cluster(tmp_path):
    tree = tmp_path / "rendered"
    executor = LocalExecutor(tmp_path / "state")
    yield tree, executor
    executor.down()


def apply(tree, executor):
    return executor.apply([s.desired for s in rendered_services(tree)])


def states(executor):
    return {u.name: u for u in executor.services()}


def test_runs_units_with_their_environment_and_maps_rendered_paths(cluster):
    tree, executor = cluster
    make_tree(tree, {"agent": {}, "engine": {"after": "agent.service", "env": "VLLM_X=/etc/xpdctl/x.json\n"}})
    assert apply(tree, executor) == {"agent": "started", "engine": "started"}
    out = wait_for(lambda: read_out(tree, "engine"))
    assert out["env"]["UNIT"] == "engine"
    assert out["env"]["VLLM_X"] == str(tree / "hosts/local/etc/xpdctl/x.json")
    assert states(executor)["engine"].state == "running"
    assert "--- xpdctl: starting" in Path(states(executor)["engine"].log).read_text()


def test_a_unit_runs_at_its_nice_level(cluster):
    tree, executor = cluster
    make_tree(tree, {"plain": {}, "niced": {"pre": "Nice=7"}})
    apply(tree, executor)
    nice = {n: int(Path(f"/proc/{wait_for(lambda n=n: read_out(tree, n))['pid']}/stat").read_text().rsplit(")", 1)[1].split()[16])
            for n in ("plain", "niced")}
    assert nice == {"plain": os.getpriority(os.PRIO_PROCESS, 0), "niced": os.getpriority(os.PRIO_PROCESS, 0) + 7}


def test_up_again_changes_only_what_changed(cluster):
    tree, executor = cluster
    make_tree(tree, {"a": {}, "b": {}})
    apply(tree, executor)
    pids = {n: wait_for(lambda n=n: read_out(tree, n))["pid"] for n in ("a", "b")}
    supervisor = live_supervisor(executor.layout)

    assert apply(tree, executor) == {"a": "unchanged", "b": "unchanged"}
    assert {n: s.pid for n, s in states(executor).items()} == pids

    (tree / "b.out").unlink()
    make_tree(tree, {"a": {}, "b": {"env": "A=2\n"}})
    # A second executor object is a second `xpdctl up`: it adopts the running supervisor.
    assert apply(tree, LocalExecutor(executor.layout.root.parent)) == {"a": "unchanged", "b": "restarted"}
    assert live_supervisor(executor.layout) == supervisor
    assert not alive(pids["b"])
    assert wait_for(lambda: read_out(tree, "b"))["env"]["A"] == "2"
    assert states(executor)["a"].pid == pids["a"]


def test_crash_restarts_per_policy(cluster):
    tree, executor = cluster
    make_tree(tree, {"keep": {"restart": "on-failure"}, "once": {"restart": "no"}})
    apply(tree, executor)
    first = {n: wait_for(lambda n=n: read_out(tree, n))["pid"] for n in ("keep", "once")}
    worker = int(wait_for(lambda: (tree / "keep.out.worker").exists() and (tree / "keep.out.worker").read_text()))
    for pid in first.values():
        os.kill(pid, signal.SIGKILL)
    keep = wait_for(lambda: (s := states(executor)["keep"]).restarts == 1 and s.state == "running" and s)
    assert keep.pid != first["keep"]
    assert keep.last_exit == "signal SIGKILL"
    # The crashed service's forked worker went with it, as with systemd's control-group kill mode.
    wait_for(lambda: not alive(worker))
    once = wait_for(lambda: (s := states(executor)["once"]).state == "failed" and s)
    assert once.restarts == 0


def test_exec_start_pre_runs_first_and_its_failure_fails_the_unit(cluster, tmp_path):
    tree, executor = cluster
    marker = tmp_path / "pre-ran"
    make_tree(tree, {
        "ok": {"pre": f"ExecStartPre=/bin/touch {marker}"},
        "bad": {"pre": "ExecStartPre=/bin/false", "restart": "no"},
        "tolerant": {"pre": "ExecStartPre=-/bin/false"},
    })
    apply(tree, executor)
    wait_for(lambda: read_out(tree, "ok"))
    assert marker.exists()
    wait_for(lambda: read_out(tree, "tolerant"))
    bad = wait_for(lambda: (s := states(executor)["bad"]).state == "failed" and s)
    assert bad.last_exit == "exit 1"
    assert read_out(tree, "bad") is None


def test_down_leaves_no_process(cluster):
    tree, executor = cluster
    make_tree(tree, {"a": {}, "b": {}})
    apply(tree, executor)
    pids = [wait_for(lambda n=n: read_out(tree, n))["pid"] for n in ("a", "b")]
    pids += [int(wait_for(lambda n=n: (tree / f"{n}.out.worker").exists() and (tree / f"{n}.out.worker").read_text()))
             for n in ("a", "b")]
    supervisor = live_supervisor(executor.layout)
    assert sorted(executor.down()) == ["a", "b"]
    assert not alive(supervisor)
    assert [p for p in pids if alive(p)] == []
    assert executor.services() == []


def test_killed_supervisor_takes_its_services_and_down_sweeps_the_rest(cluster):
    tree, executor = cluster
    make_tree(tree, {"a": {}})
    apply(tree, executor)
    main = wait_for(lambda: read_out(tree, "a"))["pid"]
    worker = int(wait_for(lambda: (tree / "a.out.worker").exists() and (tree / "a.out.worker").read_text()))
    os.kill(live_supervisor(executor.layout), signal.SIGKILL)
    wait_for(lambda: not alive(main))  # PR_SET_PDEATHSIG
    assert executor.services()[0].state == "stopped"
    # The forked worker has no death signal of its own; the group sweep in `down` (or the next `up`) ends it.
    assert executor.leftover_processes() == [worker]
    executor.down()
    wait_for(lambda: not alive(worker))
    assert executor.leftover_processes() == []


def test_units_removed_from_the_tree_are_stopped(cluster):
    tree, executor = cluster
    make_tree(tree, {"a": {}, "b": {}})
    apply(tree, executor)
    b = wait_for(lambda: read_out(tree, "b"))["pid"]
    (tree / "hosts/local/etc/systemd/system/b.service").unlink()
    make_tree(tree, {"a": {}})
    assert apply(tree, executor) == {"a": "unchanged", "b": "stopped"}
    assert not alive(b)
    assert list(states(executor)) == ["a"]


# A service that applies its config file again on SIGHUP, as the router does, and logs each load.
RELOADING = r"""
import signal, sys, time
config, out = sys.argv[1], sys.argv[2]
def load(*_):
    with open(out, "a") as f:
        f.write(open(config).read().strip() + "\n")
signal.signal(signal.SIGHUP, load)
load()
while True:
    time.sleep(3600)
"""


def test_a_change_to_the_config_alone_reloads_the_unit_and_anything_else_restarts_it(cluster):
    tree, executor = cluster
    make_tree(tree, {"router": {}})
    (tree / "reloading.py").write_text(RELOADING)
    config = tree / "hosts/local/etc/xpdctl/router.yaml"
    unit = tree / "hosts/local/etc/systemd/system/router.service"
    log = tree / "router.loads"
    unit.write_text(f"""[Service]
EnvironmentFile=/etc/xpdctl/router.env
ExecStart={sys.executable} {tree / "reloading.py"} /etc/xpdctl/router.yaml {log}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
""")
    config.write_text("v1\n")
    assert apply(tree, executor) == {"router": "started"}
    wait_for(lambda: log.exists() and log.read_text() == "v1\n")
    pid = states(executor)["router"].pid

    config.write_text("v2\n")
    assert apply(tree, executor) == {"router": "reloaded"}
    wait_for(lambda: log.read_text() == "v1\nv2\n")
    assert states(executor)["router"].pid == pid
    # The state records the new hash: applying again has nothing to do.
    assert apply(tree, executor) == {"router": "unchanged"}

    (tree / "hosts/local/etc/xpdctl/router.env").write_text("A=2\n")
    assert apply(tree, executor) == {"router": "restarted"}
    wait_for(lambda: (s := states(executor)["router"]).state == "running" and s.pid != pid)
