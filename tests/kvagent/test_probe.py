"""The verdict on a pair from its side channel, its probe and the host's RDMA expectation."""

from __future__ import annotations

import aiohttp
import pytest
from kvagent_helpers import free_port

from xpdctl.errors import InputError, UnhealthyError
from xpdctl.kvagent.config import KvAgentConfig, Pair
from xpdctl.kvagent.models import TransferResult
from xpdctl.kvagent.probe import Prober, judge_pair, keep_verdict_if_slow, require_ok


def _pair(prefill_host="h100-1", decode_host="mi300x-1") -> Pair:
    return Pair(
        prefill="xpd-lab-prefill-0", decode="xpd-lab-decode-0",
        prefill_host=prefill_host, decode_host=decode_host,
        prefill_url="http://10.0.0.1:8100", decode_url="http://10.0.0.2:8200",
        side_channel="10.0.0.1:5600", peer_agent="http://10.0.0.1:8788",
    )


def _transfer(transport="rc_mlx5/mlx5_0:1", cls="rdma", ok=True, reason="") -> TransferResult:
    return TransferResult(
        peer_host="h100-1", ok=ok, reason=reason, transport=transport, transport_class=cls,
        bandwidth_gbps=180.0, latency_ms=0.01, verified=ok, checked_at="2026-11-27T08:00:00+00:00",
    )


def _judge(pair=None, *, expect_rdma=False, side=None, starting=False, peer_starting=False, transfer=None):
    return judge_pair(
        pair or _pair(), host="mi300x-1", expect_rdma=expect_rdma, side_channel_error=side,
        engine_may_be_starting=starting, peer_may_be_starting=peer_starting, transfer=transfer,
        checked_at="2026-11-27T08:00:01+00:00",
    )


def test_rdma_pair_is_ok_and_keeps_router_fields():
    result = _judge(expect_rdma=True, transfer=_transfer())
    assert (result.ok, result.state, result.reason) == (True, "ok", "")
    assert result.prefill_url == "http://10.0.0.1:8100" and result.decode_url == "http://10.0.0.2:8200"
    assert result.transport == "rc_mlx5/mlx5_0:1" and result.measured_by == "mi300x-1"


def test_tcp_between_hosts_that_expect_rdma_is_broken():
    result = _judge(expect_rdma=True, transfer=_transfer("tcp/eth0", "tcp"))
    assert (result.ok, result.state) == (False, "broken")
    assert "tcp/eth0" in result.reason and "not RDMA" in result.reason


def test_tcp_is_fine_where_no_rdma_is_expected():
    assert _judge(expect_rdma=False, transfer=_transfer("tcp/eth0", "tcp")).ok


def test_unknown_transport_cannot_confirm_rdma():
    result = _judge(expect_rdma=True, transfer=_transfer(None, None))
    assert result.state == "broken" and "cannot be confirmed" in result.reason


def test_same_host_pair_may_use_shared_memory_despite_rdma_nics():
    pair = _pair(prefill_host="mi300x-1", decode_host="mi300x-1")
    assert _judge(pair, expect_rdma=True, transfer=_transfer("cma/memory", "shared-memory")).ok


def test_side_channel_down_while_engine_starts_is_waiting_then_broken():
    error = "NIXL side channel 10.0.0.1:5600 not reachable: Connection refused"
    waiting = _judge(side=error, starting=True, transfer=_transfer())
    broken = _judge(side=error, starting=False, transfer=_transfer())
    assert (waiting.state, broken.state) == ("waiting", "broken")
    assert not waiting.ok and not broken.ok
    assert error in waiting.reason and "still be starting" in waiting.reason
    assert "xpd-lab-prefill-0" in broken.reason
    assert broken.side_channel_reachable is False


def test_failed_transfer_gives_its_reason():
    result = _judge(transfer=_transfer(ok=False, reason="NIXL transfer from h100-1 failed: state ERR"))
    assert result.state == "broken" and "state ERR" in result.reason


def test_failed_transfer_to_a_peer_that_never_worked_is_waiting_during_startup():
    result = _judge(peer_starting=True, transfer=_transfer(ok=False, reason="cannot get NIXL metadata"))
    assert (result.ok, result.state) == (False, "waiting") and "metadata" in result.reason


def test_no_probe_yet_is_waiting():
    result = _judge(transfer=None)
    assert result.state == "waiting" and "has not finished" in result.reason


def test_require_ok_names_each_failing_pair():
    good = _judge(transfer=_transfer())
    bad = _judge(transfer=_transfer(ok=False, reason="boom"))
    require_ok([good])
    with pytest.raises(UnhealthyError) as info:
        require_ok([good, bad])
    assert info.value.exit_code == 3
    assert info.value.details == ["xpd-lab-prefill-0 -> xpd-lab-decode-0: broken: boom"]


def test_prober_refuses_a_pair_of_other_hosts():
    config = KvAgentConfig(host="other", address="10.0.0.9", pairs=[_pair()])
    with pytest.raises(InputError, match="neither side"):
        Prober(config, session=None, source=None, workers=None)


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_decode_host_reports_a_prefill_host_without_an_agent(dead_side_channel):
    pair = _pair(prefill_host="pf", decode_host="dec").model_copy(
        update={"peer_agent": _dead_url(), "side_channel": dead_side_channel}
    )
    config = KvAgentConfig(host="dec", address="127.0.0.1", startup_grace_s=0, pairs=[pair])
    async with aiohttp.ClientSession() as session:
        [result] = await Prober(config, session, source=None, workers=None).round()
    assert (result.ok, result.state, result.measured_by) == (False, "broken", "dec")
    assert "cannot get NIXL metadata from the KV agent of pf" in result.reason
    assert "not reachable" in result.reason  # the side channel, reported alongside


async def test_prefill_host_reports_a_decode_host_without_an_agent():
    pair = _pair(prefill_host="pf", decode_host="dec").model_copy(update={"peer_agent": _dead_url()})
    config = KvAgentConfig(host="pf", address="127.0.0.1", startup_grace_s=0, pairs=[pair])
    async with aiohttp.ClientSession() as session:
        [result] = await Prober(config, session, source=None, workers=None).round()
    assert (result.ok, result.state, result.measured_by) == (False, "broken", "dec")
    assert "cannot reach the KV agent of decode host dec" in result.reason


def _probe(ok: bool, at: str, timed_out: bool = False) -> TransferResult:
    return TransferResult(peer_host="p", ok=ok, checked_at=at, timed_out=timed_out,
                          reason="" if ok else ("did not finish within 120 s" if timed_out else "NIXL transfer failed"),
                          transport="tcp/eth0" if ok else None)


def test_probes_that_only_time_out_after_a_success_keep_the_pair_ok_for_a_while():
    """An engine compiling beside the agent can stall probes past their timeout; that says nothing about
    the path until no probe has succeeded for the grace; then the pair is broken."""
    last = _probe(True, "t0")
    for i, since in enumerate((125.0, 250.0, 899.0), start=1):
        last = keep_verdict_if_slow(_probe(False, f"t{i}", timed_out=True), last, since, 900.0, 3600.0)
        assert last.ok and last.transport == "tcp/eth0"
        assert "did not finish within 120 s" in last.reason and "kept the verdict of the probe at t0" in last.reason
    assert not keep_verdict_if_slow(_probe(False, "tN", timed_out=True), last, 901.0, 900.0, 3600.0).ok
    # The pair stays ok and says why its last probe is not the one that counted.
    kept = _judge(transfer=last)
    assert kept.ok and "kept the verdict of the probe at t0" in kept.reason


def test_a_probe_that_never_reached_the_network_keeps_the_verdict_past_the_grace_but_not_forever():
    """Its process was still importing nixl: that is the host's load, not the path's health,
    for up to never_started_grace_s; after that no bytes have moved for too long to call the pair ok."""
    stuck = _probe(False, "t9", timed_out=True).model_copy(update={"never_started": True})
    kept = keep_verdict_if_slow(stuck, _probe(True, "t0"), 3500.0, 900.0, 3600.0)
    assert kept.ok and "kept the verdict of the probe at t0" in kept.reason
    assert not keep_verdict_if_slow(stuck, _probe(True, "t0"), 3601.0, 900.0, 3600.0).ok
    assert not keep_verdict_if_slow(stuck, None, float("inf"), 900.0, 3600.0).ok  # never worked: nothing to keep


def test_a_failed_probe_or_a_timeout_before_any_success_is_not_excused():
    assert not keep_verdict_if_slow(_probe(False, "t1"), _probe(True, "t0"), 10.0, 900.0, 3600.0).ok
    assert not keep_verdict_if_slow(_probe(False, "t1", timed_out=True), None, float("inf"), 900.0, 3600.0).ok
    assert not keep_verdict_if_slow(_probe(False, "t2", timed_out=True), _probe(False, "t1"), 10.0, 900.0, 3600.0).ok
