"""The closed-loop solver: populations, queues and caps behave as the benchmark's loop does."""

from __future__ import annotations

import pytest

from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.calibration import DEFAULT
from xpdctl.perfmodel.queueing import Deployment, Workload, predict
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.specs import hardware, model_spec

GPT = model_spec("gpt-oss-120b")
H100 = InstanceModel(hardware("H100"), 8, GPT, DEFAULT)
MI300X = InstanceModel(hardware("MI300X"), 8, GPT, DEFAULT)
CROSS = Deployment(H100, 1, MI300X, 1, "host")


def test_latency_and_throughput_grow_with_concurrency():
    preds = [predict(CROSS, Workload(isl=1024, osl=1024, concurrency=c)) for c in (1, 4, 16, 64)]
    for a, b in zip(preds, preds[1:]):
        assert a.itl_s < b.itl_s
        assert a.e2el_s < b.e2el_s
        assert a.tps < b.tps
        assert a.decode_batch < b.decode_batch


def test_littles_law_holds_at_the_fixed_point():
    work = Workload(isl=8192, osl=1024, concurrency=32, request_rate=None)
    p = predict(CROSS, work)
    assert p.requests_per_s * p.e2el_s == pytest.approx(32, rel=0.01)
    assert p.tps == pytest.approx(p.requests_per_s * (8192 + 1024))


def test_request_rate_caps_throughput():
    work = Workload(isl=128, osl=16, concurrency=256, request_rate=2.0)
    assert predict(CROSS, work).requests_per_s == pytest.approx(2.0, rel=0.01)


def test_prefill_queues_when_it_saturates():
    slow = Deployment(InstanceModel(hardware("H100"), 1, GPT, DEFAULT), 1, MI300X, 1, "host")
    light = predict(slow, Workload(isl=8192, osl=64, concurrency=1))
    heavy = predict(slow, Workload(isl=8192, osl=64, concurrency=64))
    assert light.prefill_wait_s == pytest.approx(0, abs=1e-6)
    assert heavy.prefill_wait_s > heavy.prefill_s
    assert heavy.prefill_utilization > 0.9


def test_more_prefill_instances_shorten_the_queue():
    one = Deployment(InstanceModel(hardware("H100"), 1, GPT, DEFAULT), 1, MI300X, 1, "host")
    four = Deployment(InstanceModel(hardware("H100"), 1, GPT, DEFAULT), 4, MI300X, 1, "host")
    work = Workload(isl=8192, osl=64, concurrency=64)
    assert predict(four, work).ttft_s < predict(one, work).ttft_s


def test_local_prefill_skips_the_transfer_and_slows_decode():
    local = Deployment(H100, 1, MI300X, 1, "host", local_prefill=True)
    work = Workload(isl=1024, osl=256, concurrency=16)
    p, d = predict(local, work), predict(CROSS, work)
    assert p.transfer_s == 0 and p.kv_bytes == 0
    assert p.itl_s > d.itl_s


def test_host_path_is_save_then_nic_then_load_with_their_own_rates():
    """vLLM 0.32 stages KV synchronously: per-GPU copies out and in, the whole request over the NICs."""
    kv = GPT.kv_bytes(8192)
    xfer = kvpath.transfer(kv, "host", DEFAULT, 8, 8, 200.0)
    assert [s.name for s in xfer.stages] == ["save", "NIC", "load"]
    assert xfer.seconds == pytest.approx(sum(s.seconds for s in xfer.stages))
    save = xfer.stages[0]
    assert save.bytes == pytest.approx(kv / 8)
    assert save.seconds == pytest.approx(DEFAULT.host_save_fixed_ms / 1000 + kv / 8 / (DEFAULT.host_save_gb_s * 1e9))
    nic = xfer.stages[1]
    assert nic.seconds == pytest.approx(DEFAULT.kv_transfer_setup_ms / 1000 + kv / (200 / 8 * 1e9 * DEFAULT.nic_line_efficiency))
    # Twice the line rate (two NICs, or 400 Gb/s) shortens only the NIC stage.
    faster = kvpath.transfer(kv, "host", DEFAULT, 8, 8, 400.0)
    assert faster.stage("save") == xfer.stage("save") and faster.stage("load") == xfer.stage("load")
    assert faster.stage("NIC") < xfer.stage("NIC")
    # Fewer GPUs copy more bytes each.
    assert kvpath.transfer(kv, "host", DEFAULT, 2, 2, 200.0).stage("save") > 3 * save.seconds
    device = kvpath.transfer(kv, "device", DEFAULT, 8, 8, 200.0)
    assert [s.name for s in device.stages] == ["NIC"] and device.seconds < xfer.seconds


def test_nic_line_rate_reaches_the_prediction():
    work = Workload(isl=8192, osl=64, concurrency=1)
    slow = predict(Deployment(H100, 1, MI300X, 1, "host", nic_gbps=100.0), work)
    fast = predict(Deployment(H100, 1, MI300X, 1, "host", nic_gbps=800.0), work)
    assert slow.transfer.stage("NIC") > 5 * fast.transfer.stage("NIC")  # 8x the rate, plus the fixed setup
    assert slow.ttft_s > fast.ttft_s


def test_synchronous_loads_stall_decode_in_proportion_to_their_rate():
    xfer = kvpath.transfer(GPT.kv_bytes(8192), "host", DEFAULT, 8, 8, 200.0)
    assert kvpath.load_stall(0.0, xfer) == 1.0
    busy = 4.0 * xfer.stage("load")
    assert kvpath.load_stall(4.0, xfer) == pytest.approx(1 / (1 - busy))
    # In the closed loop: many short requests arrive often, so their loads cost decode more.
    p = predict(CROSS, Workload(isl=8192, osl=16, concurrency=64, request_rate=None))
    assert p.load_stall == pytest.approx(kvpath.load_stall(p.requests_per_s, p.transfer), rel=0.05)
    assert p.load_stall > 1.01


def test_burst_congestion_follows_the_calibration_per_path():
    """The fitted burst term: what each path gets is the calibration's (fitted) peak, not a fixed rule."""
    work = Workload(isl=8192, osl=8192, concurrency=32)
    for host_peak in (0.0, 0.5):
        cal = DEFAULT.model_copy(update={"congestion_max_host": host_peak, "congestion_max_device": 1.0})
        h, m = InstanceModel(hardware("H100"), 8, GPT, cal), InstanceModel(hardware("MI300X"), 8, GPT, cal)
        host = predict(Deployment(h, 1, m, 1, "host"), work)
        device = predict(Deployment(h, 1, m, 1, "device"), work)
        assert device.congestion > 1.2
        assert host.congestion == pytest.approx(1.0 + host_peak * (device.congestion - 1.0), rel=0.2)
