"""The closed-loop solver: populations, queues and caps behave as the benchmark's loop does."""

from __future__ import annotations

import pytest

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


def test_congestion_only_on_the_device_path():
    device = Deployment(H100, 1, MI300X, 1, "device")
    work = Workload(isl=8192, osl=8192, concurrency=32)
    assert predict(device, work).congestion > 1.2
    assert predict(CROSS, work).congestion == 1.0
