"""The status script's section format, and the real script run by this machine's sh."""

from __future__ import annotations

import asyncio

from observe_helpers import sections_text

from xpdctl.observe.hoststate import host_status
from xpdctl.observe.script import build_script
from xpdctl.observe.targets import HostTarget
from xpdctl.ssh.sections import new_marker, split_sections
from xpdctl.ssh.transport import LocalShellTransport


def test_sections_rc_absent_and_bodies():
    marker = new_marker()
    out = sections_text(
        marker, {"uname": ("0", "Linux h 6.8.0 x86_64"), "nvidia-smi": ("-", ""), "amd-smi-static": ("1", "boom")}
    )
    sections = split_sections(out, marker)
    assert sections["uname"].ok and sections["uname"].text == "Linux h 6.8.0 x86_64"
    assert sections["nvidia-smi"].rc is None
    assert (sections["amd-smi-static"].rc, sections["amd-smi-static"].text) == (1, "boom")


def test_a_foreign_marker_in_output_does_not_open_a_section():
    marker, other = new_marker(), new_marker()
    out = sections_text(marker, {"listing": ("0", f"{other} end 0\n/etc/x")})
    sections = split_sections(out, marker)
    assert list(sections) == ["listing"]
    assert sections["listing"].text.endswith("/etc/x")


def _run(target: HostTarget) -> dict:
    marker = new_marker()
    script = build_script(marker, units=[], files=[], extra_globs=[])
    result = asyncio.run(LocalShellTransport().run(target, script, 30))
    assert result.rc == 0, result.stderr
    return split_sections(result.stdout, marker)


def test_real_script_reports_this_machine_and_absent_tools():
    sections = _run(HostTarget(name="here", address="127.0.0.1"))
    assert sections["os-release"].ok and "ID=" in sections["os-release"].text
    assert sections["uname"].text.startswith("Linux ")
    assert sections["pci"].ok  # may be empty in a container without sysfs PCI, but the section exists
    assert "end" in sections
    status, failures = host_status(HostTarget(name="here", address="127.0.0.1"), sections)
    assert status.os.kernel and status.os.arch
    assert failures == []


def test_real_script_with_stand_in_vendor_tools(stand_in_tools):
    """nvidia-smi, amd-smi and ibv_devinfo are stand-ins printing captured output (no GPU or NIC here)."""
    target = HostTarget(
        name="gpu-host", address="127.0.0.1", root=str(stand_in_tools(nvidia=True, amd=True, rdma=True))
    )
    status, failures = host_status(target, _run(target))
    assert failures == []
    assert [(g.vendor, g.name) for g in status.accelerators.gpus] == [
        ("nvidia", "NVIDIA H200"),
        ("nvidia", "NVIDIA H200"),
        ("amd", "AMD Instinct MI300X"),
        ("amd", "AMD Instinct MI300X"),
    ]
    assert status.accelerators.driver_version == "580.159.04"
    assert [(p.device, p.state) for p in status.rdma] == [("mlx5_0", "PORT_ACTIVE"), ("mlx5_1", "PORT_DOWN")]


def test_failing_tool_is_reported_with_its_message(tmp_path):
    tools = tmp_path / "usr" / "bin"
    tools.mkdir(parents=True)
    smi = tools / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18\n")
    smi.chmod(0o755)
    target = HostTarget(name="h", address="127.0.0.1", root=str(tmp_path))
    status, failures = host_status(target, _run(target))
    assert status.accelerators.gpus == []
    assert failures == ["nvidia-smi exited 18: Failed to initialize NVML: Driver/library version mismatch"]


def test_section_without_exit_status_is_unfinished():
    marker = new_marker()
    out = f"{marker} os-release -\n{marker} uname 0\nLinux h 6.8\n\n{marker} nvidia-smi\n<nvidia_smi_log>"
    sections = split_sections(out, marker)
    assert (sections["os-release"].rc, sections["uname"].rc, sections["uname"].text) == (None, 0, "Linux h 6.8")
    # Cut off while nvidia-smi's output was printed: no exit status, so not ok and reported as unfinished.
    assert sections["nvidia-smi"].rc == -1 and not sections["nvidia-smi"].ok
    status, failures = host_status(HostTarget(name="h", address="10.0.0.1"), sections)
    assert failures == [
        "nvidia-smi did not finish (the status script was cut short)",
        "the status script stopped before its end (output cut short)",
    ]


def test_a_hung_tool_costs_only_its_own_section(tmp_path):
    """A stand-in nvidia-smi that hangs (as on a wedged GPU): the host still reports everything else."""
    tools = tmp_path / "usr" / "bin"
    tools.mkdir(parents=True)
    (tools / "nvidia-smi").write_text("#!/bin/sh\nexec sleep 30\n")
    (tools / "nvidia-smi").chmod(0o755)
    target = HostTarget(name="h", address="127.0.0.1", root=str(tmp_path))
    marker = new_marker()
    script = build_script(marker, units=[], files=[], extra_globs=[], probe_timeout_s=1)
    result = asyncio.run(LocalShellTransport().run(target, script, 20))
    status, failures = host_status(target, split_sections(result.stdout, marker))
    assert failures == ["nvidia-smi did not answer in time on the host (a hung driver or GPU?)"]
    assert status.os.kernel
