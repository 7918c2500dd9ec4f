"""Fixtures of the upgrade tests (helpers and the cluster's description: upgrade_helpers.py)."""

from __future__ import annotations

import pytest
from upgrade_helpers import TOKEN, Load, start_sim_cluster


@pytest.fixture
def sim_cluster(tmp_path):
    cluster = start_sim_cluster(tmp_path)
    yield cluster
    cluster.xpdctl("down", check=False)


@pytest.fixture
def load(sim_cluster):
    """load() -> a context manager running steady streaming load while the body upgrades."""
    return lambda **kw: Load(sim_cluster.router_url, TOKEN, sim_cluster.data["model"]["name"], **kw)
