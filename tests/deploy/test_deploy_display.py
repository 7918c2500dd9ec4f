"""The `up` summary for people: a row per host with its counts and what failed, then what to run next."""

from __future__ import annotations

from xpdctl.deploy.display import deploy_text
from xpdctl.deploy.models import DeployResult, HostDeploy, ServiceHealth
from xpdctl.provision.models import Failure, HostResult
from xpdctl.remote.applier import HostOutcome
from xpdctl.remote.hostchanges import HostChanges
from xpdctl.verify.kvpath import PairReport
from xpdctl.verify.smoke import SmokeResult

DKMS = ("Setting up amdgpu-dkms ...\nError! Your kernel headers for kernel 6.1.0 cannot be found at "
        "/lib/modules/6.1.0/build.\ndpkg: error processing package amdgpu-dkms (--configure) (exit 100)")  # fmt: skip


def _result(**changes) -> DeployResult:
    gpu = HostDeploy(
        host="h100-01", targeted=True,
        provision=HostResult(host="h100-01", status="changed", ok=40, changed=12),
        services=[ServiceHealth(name="xpd-lab-prefill-0", role="prefill", host="h100-01", url="http://a:8100",
                                health="healthy")],
    )  # fmt: skip
    amd = HostDeploy(
        host="mi300x-01", targeted=True,
        provision=HostResult(host="mi300x-01", status="failed", ok=20, changed=3, failed=1,
                             failure=Failure(role="amd_rocm", task="Install amdgpu-dkms", message=DKMS)),
        services=[ServiceHealth(name="xpd-lab-decode-0", role="decode", host="mi300x-01", url="http://b:8200",
                                health="not checked: provisioning failed on mi300x-01")],
    )  # fmt: skip
    fields = dict(cluster="lab", check=False, ok=False, reached="engines", hosts={"h100-01": gpu, "mi300x-01": amd},
                  model="m", router_url="http://gw:8000", curl="curl -s http://gw:8000/v1/completions",
                  problems=["no healthy prefill and decode engine to pair"], retry="mi300x-01",
                  artifacts="/state/ansible/artifacts/1", rendered="/state/rendered")  # fmt: skip
    return DeployResult(**{**fields, **changes})


def test_a_failed_host_shows_its_counts_role_task_and_the_telling_line():
    lines = deploy_text(_result()).splitlines()
    row = next(line for line in lines if line.startswith("mi300x-01")).split()
    assert row[:6] == ["mi300x-01", "failed", "20", "3", "1", "0"]
    assert " ".join(row[6:]) == ("not checked amd_rocm: Install amdgpu-dkms: Error! Your kernel headers for kernel "
                                 "6.1.0 cannot be found at /lib/modules/6.1.0/build.")  # fmt: skip
    assert next(line for line in lines if line.startswith("h100-01")).split()[:7] == [
        "h100-01", "changed", "40", "12", "0", "0", "1/1"]  # fmt: skip
    assert "problem: no healthy prefill and decode engine to pair" in lines
    assert "cluster lab is NOT up (stopped after stage engines); ansible output: /state/ansible/artifacts/1/stdout" in lines
    assert not any(line.startswith("try it") for line in lines)


def test_a_serving_cluster_shows_pairs_the_smoke_answer_and_how_to_try_it():
    pair = PairReport(prefill="xpd-lab-prefill-0", decode="xpd-lab-decode-0", ok=True, state="ok", reason="",
                      transport="tcp/eth0")  # fmt: skip
    text = deploy_text(_result(ok=True, reached="done", problems=[], retry=None, kv_pairs=[pair],
                               smoke=SmokeResult(text=" hello", prompt_tokens=9, completion_tokens=2, seconds=0.5)))
    assert "KV xpd-lab-prefill-0 -> xpd-lab-decode-0: ok via tcp/eth0" in text
    assert "smoke request through http://gw:8000: ' hello' (2 tokens in 0.5 s)" in text
    assert text.endswith("try it:\n  curl -s http://gw:8000/v1/completions")


def test_check_mode_counts_what_would_change_and_stops_there():
    text = deploy_text(_result(check=True, reached="provision"))
    assert text.splitlines()[-1] == "--check: 15 task(s) would change; nothing was changed or started"


def test_check_mode_shows_the_service_changes_a_host_would_get_with_their_diffs():
    diff = "--- /etc/xpdctl/router.yaml (on gw-01)\n+++ /etc/xpdctl/router.yaml (render)\n-a: 1\n+a: 2\n"
    applied = HostOutcome(status="changed", changes=HostChanges(
        write=["/etc/xpdctl/router.yaml"], units={"xpd-lab-router": "reloaded", "xpd-lab-kv-agent": "unchanged"},
        enable=["xpd-lab-kv-agent"], stop=["xpd-lab-decode-9"]), diffs={"/etc/xpdctl/router.yaml": diff})
    result = _result(check=True, reached="provision")
    result.hosts["h100-01"].applied = applied
    lines = deploy_text(result).splitlines()
    assert ("services on h100-01 would: stop xpd-lab-decode-9; write /etc/xpdctl/router.yaml; "
            "reload xpd-lab-router; enable xpd-lab-kv-agent") in lines
    assert lines[-4:] == diff.rstrip("\n").splitlines()
