"""How many instances serve, go out and surge, and the phases built from that."""

from __future__ import annotations

import pytest

from xpdctl.upgrade.phases import BATCH_STEPS, blue_green, in_place, sizes
from xpdctl.upgrade.state import Instance


@pytest.mark.parametrize(("pool", "max_unavailable", "expected"), [
    (3, 1, (2, 1, 0)),  # the usual rolling upgrade: two always serve
    (3, 2, (1, 2, 0)),
    (3, 3, (1, 3, 1)),  # everything at once would leave none: one surge instance serves meanwhile
    (1, 1, (1, 1, 1)),  # a pool of one needs a surge instance
    (4, 9, (1, 4, 1)),
])
def test_sizes(pool, max_unavailable, expected):
    floor, batch, surge = sizes(pool, max_unavailable)
    assert (floor, batch, surge) == expected
    assert pool + surge - batch >= floor >= 1  # what serves while a batch is out


def _instances(*names, role="decode"):
    return [Instance(name=n, host="h", role=role, url=f"http://h/{n}", generation="g1") for n in names]


def test_in_place_batches_and_surge():
    phases = in_place(_instances("d0", "d1", "d2"), _instances("d0-next"), batch=2)
    assert [(p.name, p.instances) for p in phases] == [
        ("surge up", ["d0-next"]), ("batch 1", ["d0", "d1"]), ("batch 2", ["d2"]),
        ("surge down", ["d0-next"])]
    assert phases[1].steps == BATCH_STEPS and phases[1].rollback
    # The image is on the host before the instance is drained, drained before it restarts on its new
    # files (start), warm before it serves.
    order = BATCH_STEPS.index
    assert order("pull") < order("drain") < order("wait-idle") < order("install") < order("start")
    assert order("health") < order("warm-up") < order("pairs-ok") < order("undrain")
    # --restart: an instance keeping its files would not restart at start, so it is stopped before install.
    restart = in_place(_instances("d0"), [], batch=1, stop_first=True)[0].steps
    assert restart.index("wait-idle") < restart.index("stop") < restart.index("install") < restart.index("start")


def test_blue_green_keeps_the_old_generation_until_the_new_one_serves():
    phases = blue_green(_instances("p0", role="prefill") + _instances("d0"), _instances("p0-next", "d0-next"))
    names = [p.name for p in phases]
    assert names == ["green up", "shift", "retire old", "base up", "green down", "record"]
    assert phases[0].steps[-1] == "add" and "warm-up" in phases[0].steps  # admitted only once warm
    assert phases[1].steps == ["drain", "wait-idle"] and phases[1].rollback
    assert not phases[3].rollback  # once the old generation is gone there is nothing to roll back to
