"""The ansible-runner driver on real Ansible runs of a tiny playbook (tests/provision/playbooks/tiny.yml).

Hosts: alpha and beta run with connection local on this machine (beta is told to fail a task),
gamma is an SSH host at a closed loopback port, so it is unreachable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xpdctl.errors import ExecutionError
from xpdctl.provision.runner import run_playbook, targeted_hosts

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def inventory() -> dict:
    return {
        "all": {
            "hosts": {
                "alpha": dict(LOCAL),
                "beta": {**LOCAL, "tiny_fail": True},
                "gamma": {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"},
            },
            "children": {"good": {"hosts": {"alpha": {}}}},
        }
    }


def run(tmp: Path, **kwargs):
    progress = []
    marker_dir = tmp / "markers"
    marker_dir.mkdir(exist_ok=True)
    result = run_playbook(
        PLAYBOOKS, "tiny.yml", inventory(), tmp / "private",
        extravars={"marker_dir": str(marker_dir)}, on_progress=progress.append, **kwargs,
    )  # fmt: skip
    return result, progress


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runner")
    result, progress = run(tmp)
    return tmp, result, progress


def test_counts_per_host_from_the_final_stats(first_run):
    _, result, _ = first_run
    alpha, beta, gamma = (result.hosts[h] for h in ("alpha", "beta", "gamma"))
    assert (alpha.status, alpha.changed, alpha.failed, alpha.ignored) == ("changed", 1, 0, 1)
    assert (beta.status, beta.changed, beta.failed) == ("failed", 1, 1)
    assert (gamma.status, gamma.unreachable) == ("unreachable", 1)
    assert result.failed_hosts == ["beta", "gamma"] and not result.ok
    assert result.runner_status == "failed" and result.rc != 0


def test_a_failed_host_names_the_failing_task_and_the_commands_own_message(first_run):
    _, result, _ = first_run
    failure = result.hosts["beta"].failure
    assert failure.task == "Fail when asked"
    assert failure.message == "E: Unable to locate package nvidia-driver-999 (exit 100)"
    # An ignored failure is neither a failure nor a reason.
    assert result.hosts["alpha"].failure is None


def test_an_unreachable_host_says_why(first_run):
    _, result, _ = first_run
    failure = result.hosts["gamma"].failure
    assert failure.task == "Write the marker"
    assert "127.0.0.1 port 1" in failure.message


def test_live_progress_reports_changes_failures_and_ignored_errors(first_run):
    _, _, progress = first_run
    seen = {(p.host, p.kind, p.task) for p in progress}
    assert ("alpha", "changed", "Write the marker") in seen
    assert ("beta", "failed", "Fail when asked") in seen
    assert ("gamma", "unreachable", "Write the marker") in seen
    assert ("alpha", "ignored", "Tolerate an ignored failure") in seen
    assert not any(p.kind == "failed" and p.host == "alpha" for p in progress)


def test_custom_stats_are_collected_per_host(first_run):
    _, result, _ = first_run
    assert result.stats["tiny_report"] == {"alpha": {"ok": True}, "beta": {"ok": True}}


def test_artifacts_keep_the_ansible_output(first_run):
    _, result, _ = first_run
    assert "Fail when asked" in (Path(result.artifacts) / "stdout").read_text()


def test_a_second_run_changes_nothing(first_run):
    tmp, _, _ = first_run
    result, progress = run(tmp, limit="alpha")
    assert list(result.hosts) == ["alpha"]
    assert (result.hosts["alpha"].status, result.hosts["alpha"].changed) == ("ok", 0)
    assert not [p for p in progress if p.kind == "changed"]


def test_check_mode_reports_the_change_without_making_it(tmp_path):
    result, _ = run(tmp_path, limit="good", check=True)
    assert result.check and result.hosts["alpha"].status == "changed"
    assert not (tmp_path / "markers" / "alpha").exists()


def test_a_run_after_a_check_run_is_not_a_check_and_forgets_its_variables(tmp_path):
    checked, _ = run(tmp_path, limit="good", check=True)
    assert checked.hosts["alpha"].status == "changed" and not (tmp_path / "markers" / "alpha").exists()
    (tmp_path / "other").mkdir()
    run_playbook(PLAYBOOKS, "tiny.yml", inventory(), tmp_path / "private", limit="good",
                 extravars={"marker_dir": str(tmp_path / "other")})  # fmt: skip
    assert (tmp_path / "other" / "alpha").exists()
    real, _ = run(tmp_path, limit="good")
    assert not real.check and (tmp_path / "markers" / "alpha").exists()


def test_limit_selects_names_groups_and_patterns():
    inv = inventory()
    assert targeted_hosts(inv, None) == ["alpha", "beta", "gamma"]
    assert targeted_hosts(inv, "good,gamma") == ["alpha", "gamma"]
    assert targeted_hosts(inv, "b*") == ["beta"]


def test_a_limit_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ExecutionError, match="matches no host"):
        run(tmp_path, limit="nobody")


def test_a_playbook_that_does_not_run_raises_with_its_output(tmp_path):
    broken = tmp_path / "project"
    broken.mkdir()
    (broken / "broken.yml").write_text("- name: Broken\n  hosts: all\n  tasks:\n    - no.such.module: {}\n")
    with pytest.raises(ExecutionError, match="stopped before it finished") as caught:
        run_playbook(broken, "broken.yml", inventory(), tmp_path / "private")
    assert "no.such.module" in caught.value.message
