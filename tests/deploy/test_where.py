"""Which form `up` and `status` take for an inventory: this machine's executor, or hosts over SSH."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xpdctl.deploy import runs_locally
from xpdctl.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
LOCAL = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())


def _loaded(write_inventory, data: dict):
    return load_inventory(write_inventory(data)).inventory


def test_the_shipped_local_inventory_runs_here():
    assert runs_locally(load_inventory(REPO / "inventory" / "local.yaml").inventory)


@pytest.mark.parametrize("inventory", ["lab.yaml", "lab-single-vendor.yaml"])
def test_inventories_of_servers_go_to_their_hosts(inventory):
    assert not runs_locally(load_inventory(REPO / "inventory" / inventory).inventory)


def test_this_machine_by_name_runs_here(write_inventory):
    data = copy.deepcopy(LOCAL)
    data["engine"]["python"] = sys.executable
    data["hosts"][0]["address"] = socket.gethostname()
    assert runs_locally(_loaded(write_inventory, data))


def test_containers_on_this_machine_are_not_the_local_form(write_inventory):
    data = copy.deepcopy(LOCAL)
    data["engine"]["python"] = sys.executable
    data["hosts"][0]["runtime"] = "container"
    data["engine"]["images"] = {"cpu": "vllm/vllm-openai@sha256:" + "0" * 64}
    data["engine"]["xpdctl_image"] = "xpdctl/xpdctl@sha256:" + "1" * 64
    assert not runs_locally(_loaded(write_inventory, data))


def test_host_only_flags_are_refused_for_a_local_cluster():
    done = subprocess.run([sys.executable, "-m", "xpdctl", "up", "-i", str(REPO / "inventory" / "local.yaml"),
                           "--limit", "local"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "--limit, --check, --allow-reboot and -e are for clusters of hosts" in done.stderr
