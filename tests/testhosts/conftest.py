"""Fixtures for test hosts (xpdctl.testhosts): fleets made for a test and removed after it.

Fleets here use their own names and subnets (10.88.20.x and up) so they never meet a developer's
default fleet (xpd, 10.88.0.x) or other test folders' fleets.
"""

from __future__ import annotations

import subprocess

import pytest

from xpdctl.testhosts import fleet
from xpdctl.testhosts.models import FleetRecord

SSH_TIMEOUT_S = 300


def ssh_argv(record: FleetRecord, address: str, *options: str) -> list[str]:
    argv = fleet.ssh_argv(record.name, address)
    return [*argv[:-1], "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options, argv[-1]]


def ssh(record: FleetRecord, address: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command`` on a test host over real SSH."""
    return subprocess.run(
        [*ssh_argv(record, address), command], capture_output=True, text=True, timeout=SSH_TIMEOUT_S, check=check
    )


@pytest.fixture(scope="module")
def make_fleet(testhosts_possible):
    """make_fleet(name, count, gpus, subnet=..., **create_kwargs) -> FleetRecord; destroyed at module end."""
    made: list[str] = []

    def make(name: str, count: int, gpus: list, subnet: str, **kwargs) -> FleetRecord:
        made.append(name)
        fleet.destroy(name)  # whatever an interrupted earlier run left
        return fleet.create(name, count, gpus, subnet=subnet, **kwargs)

    yield make
    for name in made:
        fleet.destroy(name)
