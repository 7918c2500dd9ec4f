"""What `apply` does to each unit (both executors): start, restart, reload, stop, leave alone."""

from xpdctl.units.changes import decide
from xpdctl.units.state import UnitState


def unit(name, digest, state="running"):
    return UnitState(name=name, host="h", role="decode", content_hash=digest, state=state, log="")


def test_start_restart_stop_unchanged():
    current = {"a": unit("a", "1"), "b": unit("b", "1"), "c": unit("c", "1"), "d": unit("d", "1", "failed")}
    changes = decide({"a": "1", "b": "2", "d": "1", "e": "1"}, current)
    assert changes == {"a": "unchanged", "b": "restarted", "d": "started", "e": "started", "c": "stopped"}


def test_a_running_unit_whose_config_alone_changed_is_reloaded():
    # "<unit and env files>+<config files>": the form a unit with ExecReload= has (xpdctl.units.unitfile).
    current = {"router": unit("router", "u1+c1"), "stopped": unit("stopped", "u1+c1", "stopped"),
               "starting": unit("starting", "u1+c1", "starting"), "unit": unit("unit", "u1+c1")}
    changes = decide({"router": "u1+c2", "stopped": "u1+c2", "starting": "u1+c2", "unit": "u2+c2"}, current)
    assert changes == {"router": "reloaded", "stopped": "restarted", "starting": "restarted", "unit": "restarted"}
    # A unit rendered before it had ExecReload= (one hash) is restarted onto its new unit.
    assert decide({"router": "u1+c1"}, {"router": unit("router", "old")}) == {"router": "restarted"}
