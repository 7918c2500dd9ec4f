"""Fixtures shared across test folders. Each section says which part of xpdctl it serves."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import ports
from tests.otlp import ThreadedReceiver

REPO = Path(__file__).resolve().parent.parent

# --- the order of a test session -------------------------------------------------------------------
#
# Tiers run as blocks: unmarked tests first, then the test-host tier, then the containers tier (test
# hosts with real dockerd; its fleet, registry and images are made once, tests/containers/conftest.py),
# then the real-vLLM tier. The
# session's vLLM engines (vllm_session below) start at the first vllm test and stop at the end of the
# session, so no other test shares the 2 cores with them; the test-host tests do not share them with
# engines either. Within a tier the collection order is kept (modules stay whole, so a module's
# fixtures are set up once), except that the test-host tier starts with the modules that share the
# serving fleet, then those that share the doors fleet (served_fleet, doors_fleet below), so each
# fleet's hosts run only while its users do.

# The lifecycle tests kill the decode engine and finally stop the shared cluster: last of all.
_LAST = "tests/vllm_tier/test_lifecycle.py"


def _tier(item) -> tuple[int, int]:
    if item.get_closest_marker("vllm"):
        return 3, int(item.nodeid.startswith(_LAST))
    if item.get_closest_marker("containers"):
        return 2, 0
    if item.get_closest_marker("testhosts"):
        # The users of each shared fleet one after the other, the serving fleet's first: a fleet's
        # hosts run only while its users do (served_fleet, doors_fleet below).
        names = getattr(item, "fixturenames", ())
        return 1, 0 if _SERVED in names else 1 if _DOORS in names else 2
    return 0, 0


def pytest_collection_modifyitems(items):
    items.sort(key=_tier)


def pytest_configure(config):
    """A session stopped by SIGTERM (`timeout`, CI's limit, a killed job) tears down like one stopped
    by Ctrl-C: fixtures' finalizers run, so the engines, clusters and test hosts they started stop.
    Without this Python dies at once, and the local cluster's detached supervisor kept its engines
    running (found after a `timeout 600 pytest ...`: two vLLM clusters still up)."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture(scope="session", autouse=True)
def _scratch_in_tmp(tmp_path_factory):
    """Read-only runs (preflight, --check, status) keep scratch files in XPDCTL_SCRATCH_DIR (xpdctl/paths.py):
    here in pytest's temporary folder, so tests leave nothing in the machine's temp dir."""
    os.environ["XPDCTL_SCRATCH_DIR"] = str(tmp_path_factory.mktemp("scratch"))


# --- inventories (xpdctl/inventory, kvcompat, plan, render) -------------------------------------

_LAB = yaml.safe_load((REPO / "inventory" / "lab.yaml").read_text())


@pytest.fixture
def lab_data() -> dict:
    """inventory/lab.yaml as a dict, free to mutate (H100 prefill -> MI300X decode)."""
    return copy.deepcopy(_LAB)


@pytest.fixture
def write_inventory(tmp_path):
    """write_inventory(data: dict | str) -> path of an inventory file in tmp_path."""

    def write(data, name: str = "inventory.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


# --- test hosts (xpdctl/testhosts and everything tested on them) ---------------------------------


@pytest.fixture(scope="session")
def testhosts_possible() -> None:
    """Skips where test hosts cannot run; under CI (``CI`` set) fails instead, so a CI machine without
    root or without the tools ``./install.sh --test`` installs never passes by skipping the tier."""
    from xpdctl.testhosts import fleet

    missing = [tool for tool in fleet.TOOLS if shutil.which(tool) is None]
    why = ("test hosts need root (network namespaces, mounts)" if os.geteuid() != 0 else
           f"test hosts need {', '.join(missing)} (./install.sh --test installs them)" if missing else None)
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)


_SERVED = "served_fleet"
_DOORS = "doors_fleet"
# Fleets shared by several modules: each is destroyed after the last test that uses it
# (pytest_runtest_teardown below), not at the end of the session, so two never run at once.
_SHARED_FLEETS = {_SERVED: pytest.StashKey(), _DOORS: pytest.StashKey()}


def _shared_fleet(request, tmp_path_factory, name: str, make):
    shared = make(tmp_path_factory.mktemp(name.replace("_", "-")))
    request.config.stash[_SHARED_FLEETS[name]] = shared
    try:
        shared.create()
        yield shared
    finally:
        shared.destroy()


@pytest.fixture(scope="session")
def served_fleet(request, tmp_path_factory, testhosts_possible):
    """A fleet of test hosts serving a cluster, brought up once per session (tests/served_fleet.py says
    how and who shares it). A user calls ``claim`` first."""
    from tests.served_fleet import ServedFleet

    yield from _shared_fleet(request, tmp_path_factory, _SERVED, ServedFleet)


@pytest.fixture(scope="session")
def doors_fleet(request, tmp_path_factory, testhosts_possible):
    """Test hosts with client keys, a host firewall and two routers behind a virtual address, up once
    per session (tests/doors_fleet.py says how and who shares it)."""
    from tests.doors_fleet import DoorsFleet

    yield from _shared_fleet(request, tmp_path_factory, _DOORS, DoorsFleet)


def pytest_runtest_teardown(item, nextitem):
    later = item.session.items[item.session.items.index(item) + 1:]
    for name, key in _SHARED_FLEETS.items():
        shared = item.config.stash.get(key, None)
        if shared is None or name not in item.fixturenames:
            continue
        if not any(name in getattr(other, "fixturenames", ()) for other in later):
            shared.destroy()
            del item.config.stash[key]


# --- real vLLM tier (xpdctl/local, xpdctl/models, the router and KV agent on real engines) ---------
#
# One local PD cluster per test session, started with `xpdctl up` on inventory/local.yaml, and one
# aggregated vLLM instance (no KV transfer) as the reference for greedy outputs. Both are started at
# once: on 2 cores each vLLM start takes one to a few minutes, and the tier must stay short.

VLLM_START_TIMEOUT_S = 1500  # generous: the machine is shared, and starts slow down under load


@pytest.fixture(scope="session")
def free_port_block():
    """free_port_block(count) -> first of ``count`` consecutive free loopback ports (tests/ports.py)."""
    return ports.free_port_block


def _wait_health(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s")


@dataclass
class LocalCluster:
    inventory: Path
    env: dict
    up: dict  # `xpdctl up -o json`
    model: str
    model_path: str
    router_url: str
    traces: ThreadedReceiver  # the session's OTLP receiver: the router and both engines export to it

    def xpdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(self.inventory)],
                              env=self.env, capture_output=True, text=True, check=check, timeout=600)

    def status(self) -> dict:
        return json.loads(self.xpdctl("status", "-o", "json").stdout)


def _local_inventory(tmp: Path, traces_url: str) -> Path:
    """inventory/local.yaml with free ports (a developer's own local cluster may hold the defaults),
    the interpreter named by absolute path (the copy lives outside the repository) and tracing on."""
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    # Scraped every second, for the dashboard test (tests/vllm_tier/test_dashboard.py).
    data["observability"] = {**data.get("observability", {}), "otlp_traces_endpoint": traces_url,
                             "scrape_interval_s": 1, "evaluation_interval_s": 1}
    base = ports.free_port_block(8)
    data["pools"]["prefill"]["port"] = base
    data["pools"]["decode"]["port"] = base + 1
    data["router"]["port"] = base + 2
    data["kv"]["agent_port"] = base + 3
    data["kv"]["side_channel_port"] = base + 4  # and base + 5: one per engine
    data["kv"]["events_port"] = base + 6  # and base + 7: one per engine
    venv_python = REPO / ".venv" / "bin" / "python"
    data["engine"]["python"] = str(venv_python if venv_python.exists() else Path(sys.executable))
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _aggregated_command(inventory: Path, port: int) -> tuple[list[str], dict]:
    """The prefill engine's own command line and environment, without KV transfer or KV events, on another port."""
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    plan = build_plan(load_inventory(inventory), {})
    prefill = next(s for s in plan.services() if s.role == "prefill")
    args = list(prefill.command)
    for flag in ("--kv-transfer-config", "--kv-events-config"):  # the latter's port is the prefill's
        i = args.index(flag)
        del args[i:i + 2]
    args[args.index("--port") + 1] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
    # It shares the decode engine's core: the tests send decode little work while they compare.
    env.update({"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "1"})
    return args, env


@pytest.fixture(scope="session")
def vllm_session(tmp_path_factory):
    """(LocalCluster, aggregated engine URL), started once; everything is stopped at the end."""
    tmp = tmp_path_factory.mktemp("vllm-tier")
    traces = ThreadedReceiver()
    inventory = _local_inventory(tmp, traces.url)
    # The router's admin API on, for tests that drain and add backends (tests/upgrade).
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp / "state"), XPDCTL_ROUTER_ADMIN_TOKEN="vllm-tier-admin-token")
    agg_port = ports.free_port_block(1)
    agg_url = f"http://127.0.0.1:{agg_port}"
    # The model must exist before the reference engine starts; `up` would build it too.
    from xpdctl.inventory import load_inventory
    from xpdctl.models import ensure_model

    model = load_inventory(inventory).inventory.model
    ensure_model(model.builder, Path(model.weights_path))
    with open(tmp / "up.stderr", "w") as up_err:
        up = subprocess.Popen([sys.executable, "-m", "xpdctl", "up", "-i", str(inventory), "-o", "json",
                               "--timeout", str(VLLM_START_TIMEOUT_S)],
                              env=env, stdout=subprocess.PIPE, stderr=up_err, text=True)
    args, agg_env = _aggregated_command(inventory, agg_port)
    with open(tmp / "aggregated.log", "w") as agg_log:
        agg = subprocess.Popen(args, env=agg_env, stdout=agg_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = up.communicate(timeout=VLLM_START_TIMEOUT_S * 3)
        if up.returncode != 0:
            raise RuntimeError(f"xpdctl up failed ({up.returncode}): {(tmp / 'up.stderr').read_text()[-3000:]}")
        result = json.loads(out)
        cluster = LocalCluster(inventory=inventory, env=env, up=result, model=result["model"],
                               model_path=result["model_path"], router_url=result["router_url"], traces=traces)
        _wait_health(agg_url, agg, VLLM_START_TIMEOUT_S)
        yield cluster, agg_url
    finally:
        if up.poll() is None:
            up.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agg.pid, signal.SIGKILL)
        agg.wait()
        subprocess.run([sys.executable, "-m", "xpdctl", "down", "-i", str(inventory)], env=env,
                       capture_output=True, timeout=600)
        traces.close()


@pytest.fixture(scope="session")
def local_cluster(vllm_session) -> LocalCluster:
    return vllm_session[0]


@pytest.fixture(scope="session")
def aggregated_url(vllm_session) -> str:
    return vllm_session[1]
