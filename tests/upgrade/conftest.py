"""Fixtures of the upgrade tests (helpers and the cluster's description: upgrade_helpers.py)."""

from __future__ import annotations

import os

import pytest
import yaml
from upgrade_helpers import REPO, TOKEN, Load, SimCluster, free_port_block, write_release


@pytest.fixture
def sim_cluster(tmp_path):
    # Ports: prefill, 3 decodes, router, KV agent, 4 side channels; the same block again for
    # surge/green instances (--alt-port-offset).
    count = 10
    base = free_port_block(2 * count)
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    del data["model"]["builder"]  # the simulator needs no weights
    data["model"]["path"] = str(tmp_path / "no-model")
    data["engine"]["server"] = "sim"
    data["engine"]["python"] = str(write_release(tmp_path / "release-1"))
    data["hosts"][0]["gpu"]["count"] = 6  # in both pools: three cores each
    data["pools"]["prefill"].update(port=base, instances_per_host=1)
    data["pools"]["decode"].update(port=base + 1, instances_per_host=3)
    data["router"]["port"] = base + 4
    data["kv"].update(agent_port=base + 5, side_channel_port=base + 6)
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp_path / "state"), XPDCTL_ROUTER_ADMIN_TOKEN=TOKEN)
    cluster = SimCluster(tmp=tmp_path, inventory=inventory, data=data, env=env,
                         state_dir=tmp_path / "state" / data["cluster"], router_url=f"http://127.0.0.1:{base + 4}",
                         decode_ports=[base + 1, base + 2, base + 3], alt_offset=count)
    cluster.xpdctl("up", "--timeout", "120")
    yield cluster
    cluster.xpdctl("down", check=False)


@pytest.fixture
def load(sim_cluster):
    """load() -> a context manager running steady streaming load while the body upgrades."""
    return lambda **kw: Load(sim_cluster.router_url, TOKEN, sim_cluster.data["model"]["name"], **kw)
