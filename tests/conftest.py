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
# serving fleet (served_fleet below), so its hosts run only while they do.

# The lifecycle tests kill the decode engine and finally stop the shared cluster: last of all.
_LAST = "tests/vllm_tier/test_lifecycle.py"


def _tier(item) -> tuple[int, bool]:
    if item.get_closest_marker("vllm"):
        return 3, item.nodeid.startswith(_LAST)
    if item.get_closest_marker("containers"):
        return 2, False
    if item.get_closest_marker("testhosts"):
        # The users of the shared serving fleet first, one after the other: its hosts' services run
        # only while they do (served_fleet below).
        return 1, _SERVED not in getattr(item, "fixturenames", ())
    return 0, False


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
