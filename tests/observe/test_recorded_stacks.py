"""`status` against the engine stacks `up` recorded: a running engine's /version that is not its host's
recorded vLLM, and a recorded pair that cannot shake hands, are errors."""

from xpdctl.observe.cluster import with_recorded_stacks
from xpdctl.status_model import ClusterStatus, EngineStatus, HostStatus


def _status(version: str) -> ClusterStatus:
    engine = EngineStatus(service="xpd-lab-decode-0", role="decode", url="http://10.0.0.21:8200", healthy=True,
                          vllm_version=version)
    host = HostStatus(name="mi300x-01", address="10.0.0.21", reachable=True, engines=[engine])
    return ClusterStatus(cluster="lab", observed_at="2026-12-02T02:00:00+00:00", duration_s=0.1, healthy=True,
                         hosts=[host])


RECORD = {"read_at": 0.0, "pairs": [], "hosts": {"mi300x-01": {
    "roles": ["decode"], "vendor": "amd", "declared": "0.32.0+rocm700", "command": ["/opt/vllm/bin/python"],
    "identity": {"vllm_version": "0.32.0+rocm700"}}}}


def test_an_engine_serving_another_vllm_than_its_host_reported_is_an_error():
    status = with_recorded_stacks(_status("0.31.0"), RECORD)
    assert not status.healthy
    (problem,) = status.problems
    assert problem.host == "mi300x-01" and problem.severity == "error"
    assert problem.what == "xpd-lab-decode-0 serves vLLM 0.31.0, but /opt/vllm/bin/python reported 0.32.0+rocm700 " \
                           "when it was read"
    assert status.hosts[0].problems == [problem]


def test_the_recorded_stack_served_and_no_record_change_nothing():
    status = with_recorded_stacks(_status("0.32.0+rocm700"), RECORD)
    assert status.healthy and status.problems == []
    assert [(h.host, h.vllm_version, h.declared_vllm) for h in status.stacks.hosts] == [
        ("mi300x-01", "0.32.0+rocm700", "0.32.0+rocm700")]
    unrecorded = with_recorded_stacks(_status("0.31.0"), None)
    assert unrecorded.healthy and unrecorded.stacks is None


def test_a_recorded_pair_that_cannot_shake_hands_is_an_error():
    factor = {"name": "attention_backend", "prefill": "FLASH_ATTN (...)", "decode": "TRITON_ATTN (...)",
              "ok": False, "why": "set kv.attention_backend to one both run"}
    record = {**RECORD, "pairs": [{"prefill": "h100-01", "decode": "mi300x-01", "factors": [factor]}]}
    (problem,) = with_recorded_stacks(_status("0.32.0+rocm700"), record).problems
    assert problem.what.startswith("h100-01 -> mi300x-01: attention_backend: FLASH_ATTN")
