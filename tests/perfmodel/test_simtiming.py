"""The simulator's hardware-profile timing, on a hand-driven clock (no sleeping, no timing noise)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from xpdctl.cli import cli
from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.simtiming import ProfileTiming
from xpdctl.perfmodel.specs import hardware, model_spec
from xpdctl.sim.config import SimConfig
from xpdctl.sim.timing import TimingModel, timing_for

GPT = model_spec("gpt-oss-120b")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _timing(profile: str, path: str = "host", scale: float = 1.0) -> tuple[ProfileTiming, Clock]:
    clock = Clock()
    return ProfileTiming(InstanceModel(hardware(profile), 8, GPT, DEFAULT), path, scale, clock), clock


def test_prefill_queues_and_shares_steps_under_load():
    t, clock = _timing("H100-SXM")
    first = t.prefill_s(8192)
    assert first == pytest.approx(t.instance.prefill_residence_s(8192, present=1)[0])
    second = t.prefill_s(8192)  # arrives at the same instant: after the first, sharing steps with it
    assert first < second < 2 * first
    clock.now += 100  # long after: alone again
    assert t.prefill_s(8192) == pytest.approx(first)


def test_kv_pull_costs_the_transfer_and_a_decode_step():
    host, _ = _timing("MI300X", "host")
    device, _ = _timing("MI300X", "device")
    transfer = kvpath.transfer(GPT.kv_bytes(8192), "host", DEFAULT, 8, 8, DEFAULT.default_nic_gbps).seconds
    assert host.kv_pull_s(8192) == pytest.approx(transfer + host.itl_s())
    assert device.kv_pull_s(8192) < host.kv_pull_s(8192)


def test_decode_slows_as_sequences_join():
    t, _ = _timing("MI300X")
    t.prefill_s(1024)
    alone = t.token_times(0.0, 100)
    for _ in range(31):
        t.prefill_s(1024)
        t.token_times(0.0, 100)
    crowded = t.token_times(0.0, 100)
    assert crowded[1] - crowded[0] > alone[1] - alone[0]


def test_device_path_congests_long_resident_sequences():
    host, _ = _timing("MI300X", "host")
    device, _ = _timing("MI300X", "device")
    for t in (host, device):
        for _ in range(16):
            t.kv_pull_s(8192)
            t.token_times(0.0, 8192)
    assert device.itl_s(8192) > 1.2 * host.itl_s(8192)


def test_time_scale_scales_every_duration():
    full, _ = _timing("H100-SXM", scale=1.0)
    tenth, _ = _timing("H100-SXM", scale=0.1)
    assert tenth.prefill_s(2048) == pytest.approx(full.prefill_s(2048) / 10)
    assert tenth.itl_s() == pytest.approx(full.itl_s() / 10)


def test_sim_config_picks_the_timing():
    assert isinstance(timing_for(SimConfig(model="m")), TimingModel)
    profiled = timing_for(SimConfig(model="m", profile="mi300x", profile_tp=4, kv_path="device"))
    assert isinstance(profiled, ProfileTiming)
    assert profiled.instance.hw.name == "MI300X" and profiled.instance.tp == 4 and profiled.path == "device"


def test_sim_command_rejects_an_unknown_profile():
    res = CliRunner().invoke(cli, ["sim", "--model", "m", "--port", "0", "--profile", "H300"])
    assert res.exit_code != 0
    assert "no performance profile for GPU model 'H300'" in str(res.exception)
