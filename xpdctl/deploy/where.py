"""Which form of ``up`` and ``status`` an inventory gets: this machine's executor, or hosts over SSH."""

from __future__ import annotations

from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.topology import runtime_of
from xpdctl.local.cluster import is_this_machine


def runs_locally(inv: Inventory) -> bool:
    """Every host is this machine and runs engines natively: :mod:`xpdctl.local` runs the cluster as
    supervised processes here, with no SSH, Ansible or systemd involved."""
    return all(is_this_machine(host.address) and runtime_of(inv, host) == "native" for host in inv.hosts)
