"""Start order of units from their After=/Requires=/Wants= lines, as systemd orders a transaction."""

from __future__ import annotations

from collections.abc import Sequence

from xpdctl.errors import InputError
from xpdctl.units.unitfile import Unit


def start_order(units: Sequence[Unit]) -> list[Unit]:
    """Units ordered so each comes after the units it names; ties keep the given order.

    As in systemd, Requires= and Wants= pull no ordering of their own: only After= orders. Names
    outside the set (network-online.target and the like) are ignored.
    """
    by_name = {u.name: u for u in units}
    placed: list[Unit] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(unit: Unit) -> None:
        if unit.name in done:
            return
        if unit.name in visiting:
            cycle = " -> ".join(visiting[visiting.index(unit.name):] + [unit.name])
            raise InputError(f"units order each other in a cycle: {cycle}; remove one After= line")
        visiting.append(unit.name)
        for dep in unit.after:
            if dep in by_name:
                visit(by_name[dep])
        visiting.pop()
        done.add(unit.name)
        placed.append(unit)

    for unit in units:
        visit(unit)
    return placed
