import pytest

from xpdctl.errors import InputError
from xpdctl.local.order import start_order
from xpdctl.units.unitfile import ExecCommand, Unit


def unit(name, after=()):
    return Unit(name=name, exec_start=ExecCommand(argv=["true"]), after=list(after))


def test_after_orders_and_ties_keep_given_order():
    units = [unit("router", ["prefill", "decode"]), unit("prefill", ["agent"]), unit("decode"), unit("agent")]
    assert [u.name for u in start_order(units)] == ["agent", "prefill", "decode", "router"]


def test_names_outside_the_set_are_ignored():
    assert [u.name for u in start_order([unit("a", ["network-online.target"])])] == ["a"]


def test_cycle_is_reported():
    with pytest.raises(InputError, match="a -> b -> a"):
        start_order([unit("a", ["b"]), unit("b", ["a"])])
