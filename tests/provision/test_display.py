"""What a person sees: progress lines, the summary and preflight tables, -e parsing, failure messages."""

from __future__ import annotations

import pytest

from xpdctl.errors import InputError
from xpdctl.provision.display import headline, parse_extra_vars, preflight_table, progress_line, provision_table
from xpdctl.provision.events import Progress, failure_message
from xpdctl.provision.models import Failure, HostResult, PreflightHost, PreflightResult, ProvisionResult
from xpdctl.provision.preflight_checks import Check


def test_progress_lines_name_host_role_and_task():
    assert progress_line(Progress("h100-01", "role", "nvidia_driver", "Blacklist nouveau")) == "h100-01          > nvidia_driver"
    line = progress_line(Progress("mi300x-01", "failed", "amd_rocm", "Install rocm", "E: dkms failed\nsee make.log"))
    assert line.splitlines() == [
        "mi300x-01          FAILED      amd_rocm: Install rocm",
        "                  E: dkms failed",
        "                  see make.log",
    ]


def test_summary_shows_counts_the_failing_task_and_pending_reboots():
    result = ProvisionResult(
        cluster="lab", check=False, ok=False, preflight={}, artifacts="/a", retry="mi300x-01",
        hosts={
            "h100-01": HostResult(host="h100-01", status="changed", ok=40, changed=11, reboot_pending=["driver"]),
            "mi300x-01": HostResult(host="mi300x-01", status="failed", ok=20, changed=3, failed=1,
                                    failure=Failure(role="amd_rocm", task="Install rocm", message="E: boom\nmore")),
        },
    )  # fmt: skip
    lines = provision_table(result).splitlines()
    assert lines[0].split() == ["HOST", "STATUS", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED", "NOTE"]
    assert lines[1].endswith("reboot pending: driver")
    assert lines[2].split()[:5] == ["mi300x-01", "failed", "20", "3", "1"]
    assert lines[2].endswith("amd_rocm: Install rocm: E: boom")


def test_preflight_table_has_one_row_per_check_and_a_row_for_hosts_without_a_report():
    result = PreflightResult(
        cluster="lab", ok=False, artifacts="/a",
        hosts=[
            PreflightHost(host="a", ok=False, reachable=True,
                          checks=[Check(name="gpus", status="fail", detail="found 7"), Check(name="os", status="ok", detail="ubuntu 22.04")]),
            PreflightHost(host="b", ok=False, reachable=False, error="ssh: connect to host 10.0.0.2 port 22: No route to host"),
        ],
    )  # fmt: skip
    rows = [line.split(None, 3) for line in preflight_table(result).splitlines()[1:]]
    assert rows == [
        ["a", "gpus", "FAIL", "found 7"],
        ["a", "os", "ok", "ubuntu 22.04"],
        ["b", "-", "FAIL", "ssh: connect to host 10.0.0.2 port 22: No route to host"],
    ]


def test_extra_vars_from_key_value_yaml_and_files(tmp_path):
    path = tmp_path / "vars.yaml"
    path.write_text("rdma_stack: doca\n")
    found = parse_extra_vars(("preflight_os_allowed=[debian 12, ubuntu 22.04]", "xpd_x=3", "empty=", f"@{path}"))
    assert found == {"preflight_os_allowed": ["debian 12", "ubuntu 22.04"], "xpd_x": 3, "empty": "", "rdma_stack": "doca"}
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_extra_vars(("novalue",))
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(InputError, match="mapping"):
        parse_extra_vars((f"@{tmp_path / 'list.yaml'}",))


def test_failure_message_of_a_loop_names_the_failing_item():
    res = {"msg": "One or more items failed", "results": [
        {"item": "rdma-core", "failed": False},
        {"item": "doca-ofed", "failed": True, "msg": "No package matching 'doca-ofed' is available"},
    ]}  # fmt: skip
    assert failure_message(res) == "doca-ofed: No package matching 'doca-ofed' is available"


def test_a_failed_package_install_shows_the_install_scripts_error():
    """Shaped like apt-get's output when a package's post-installation script fails (seen on test hosts)."""
    res = {
        "rc": 100, "msg": "'/usr/bin/apt-get -y install amdgpu-dkms' failed: E: Sub-process /usr/bin/dpkg returned an error code (1)",
        "stdout": "Reading package lists...\nSetting up amdgpu-dkms (1:6.12.12) ...\n"
                  "Error! Bad return status for module build on kernel: 6.8.0 (x86_64)\n"
                  "Consult /var/lib/dkms/amdgpu/6.12.12/build/make.log for more information.\n"
                  "Setting up rocm-core (6.4.1) ...\nSetting up rocm (6.4.1) ...\n"
                  "dpkg: error processing package amdgpu-dkms (--configure):\nErrors were encountered while processing:\n amdgpu-dkms",
        "stderr": "debconf: delaying package configuration, since apt-utils is not installed\n"
                  "E: Sub-process /usr/bin/dpkg returned an error code (1)",
    }  # fmt: skip
    message = failure_message(res)
    assert "Error! Bad return status for module build" in message and "debconf" not in message
    assert message.endswith("E: Sub-process /usr/bin/dpkg returned an error code (1) (exit 100)")
    assert headline(message) == "Error! Bad return status for module build on kernel: 6.8.0 (x86_64)"


def test_failure_message_of_a_long_command_keeps_its_last_lines():
    res = {"rc": 1, "stderr": "x" * 2000 + "\nE: the real error", "msg": "non-zero return code"}
    message = failure_message(res)
    assert message.startswith("...") and message.endswith("E: the real error (exit 1)") and len(message) <= 600
