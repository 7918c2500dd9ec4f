"""The persisted rollout and the one-upgrade-at-a-time lock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.upgrade.state import Instance, Layout, Phase, Rollout, exclusive, load_rollout, save_rollout


def _rollout() -> Rollout:
    return Rollout(cluster="c", pool="decode", mode="in-place", by="me@here", started_at="t",
                   phases=[Phase(name="batch 1", instances=["d0"], steps=["drain", "stop"])],
                   instances={"d0": Instance(name="d0", host="h", role="decode", url="http://h:1", generation="g")},
                   pool_size=1, floor=1, old_generation="g", new_generation="g")


def test_round_trip_and_current_step(tmp_path):
    layout = Layout(tmp_path)
    assert load_rollout(layout) is None
    r = _rollout()
    r.step = 1
    save_rollout(layout, r)
    again = load_rollout(layout)
    assert again == r
    phase, step = again.current()
    assert (phase.name, step) == ("batch 1", "stop")
    again.phase = 1
    assert again.current() is None


def test_rollout_recorded_before_resume_could_retarget_still_loads(tmp_path):
    layout = Layout(tmp_path)
    save_rollout(layout, _rollout())
    recorded = json.loads(layout.rollout.read_text())
    for key in ("image", "alt_port_offset", "retargets"):
        del recorded[key]
    layout.rollout.write_text(json.dumps(recorded))
    again = load_rollout(layout)
    assert (again.image, again.alt_port_offset, again.retargets) == (None, 1000, [])


def test_second_upgrade_is_refused_while_one_runs(tmp_path):
    layout = Layout(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", str(layout.lock)],
        stdout=subprocess.PIPE, text=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ExecutionError, match="another `xpdctl upgrade`"):
            with exclusive(layout):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(layout):  # the lock died with its holder
        pass
