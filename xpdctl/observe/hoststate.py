"""Turn the sections one host's status script printed into a :class:`HostStatus` (no judging here)."""

from __future__ import annotations

from collections.abc import Callable

from xpdctl.errors import ExecutionError
from xpdctl.observe import drift
from xpdctl.observe.script import TIMED_OUT, UNFINISHED
from xpdctl.observe.targets import HostTarget
from xpdctl.probes import amd, host, nvidia, pci, rdma
from xpdctl.ssh.sections import Section
from xpdctl.status_model import Accelerators, HostStatus, UnitState


def _merge(reports: list[Accelerators]) -> Accelerators:
    merged = Accelerators()
    for report in reports:
        merged.gpus.extend(report.gpus)
        for field in ("driver_version", "cuda_version", "rocm_version"):
            if getattr(merged, field) is None:
                setattr(merged, field, getattr(report, field))
    return merged


def _tool_failure(name: str, section: Section) -> str:
    if section.rc == UNFINISHED:
        return f"{name} did not finish (the status script was cut short)"
    if section.rc == TIMED_OUT:
        return f"{name} did not answer in time on the host (a hung driver or GPU?)"
    first = next((line.strip() for line in section.text.splitlines() if line.strip()), "no output")
    return f"{name} exited {section.rc}: {first[:200]}"


def accelerators(sections: dict[str, Section]) -> tuple[Accelerators, list[str]]:
    """GPUs from whichever vendor tools the host has, and a line per tool that failed."""
    failures: list[str] = []
    reports: list[Accelerators] = []

    def run(names: tuple[str, ...], parse: Callable[..., Accelerators]) -> None:
        """Parse the sections of one tool (``parse`` gets each one's text, None where it did not run ok)."""
        present = [sections.get(name) for name in names]
        ran = [(name, s) for name, s in zip(names, present) if s is not None and s.rc is not None]
        failed = [(name, s) for name, s in ran if not s.ok]
        failures.extend(_tool_failure(name, s) for name, s in failed)
        if len(failed) == len(ran):  # not installed, or nothing it printed is usable
            return
        try:
            reports.append(parse(*[s.text if s is not None and s.ok else None for s in present]))
        except ExecutionError as exc:
            failures.append(exc.message)

    run(("nvidia-smi",), nvidia.parse_query_xml)
    run(("amd-smi-static", "amd-smi-metric"), amd.parse_amd_smi)
    if not any(gpu.vendor == "amd" for report in reports for gpu in report.gpus):
        # Hosts whose ROCm predates amd-smi still name their GPUs through rocm-smi.
        run(("rocm-smi-product",), amd.parse_rocm_smi_product)
    merged = _merge(reports)
    module = sections.get("nvidia-module")
    if merged.driver_version is None and module is not None and module.ok:
        merged.driver_version = host.parse_nvidia_kernel_module(module.text)
    version = sections.get("rocm-version")
    if version is not None and version.ok:
        merged.rocm_version = amd.parse_rocm_version(version.text)
    return merged, failures


def _units(target: HostTarget, section: Section | None) -> list[UnitState]:
    """``systemctl is-active u1 u2 ...`` prints one state per unit in order; anything else is unknown."""
    states = section.text.split() if section is not None and section.ok else []
    if len(states) != len(target.services):
        states = ["unknown"] * len(target.services)
    return [
        UnitState(service=s.name, role=s.role, unit=s.unit, active=state) for s, state in zip(target.services, states)
    ]


def host_status(target: HostTarget, sections: dict[str, Section]) -> tuple[HostStatus, list[str]]:
    """The host's observed state, and the lines of probes that failed (for the judge to report)."""
    text = {name: section.text for name, section in sections.items() if section.ok}
    gpus, failures = accelerators(sections)
    status = HostStatus(
        name=target.name,
        address=target.address,
        reachable=True,
        os=host.os_info(text.get("os-release", ""), text.get("uname", "")),
        accelerators=gpus,
        pci=pci.parse_sysfs_listing(text.get("pci", "")),
        rdma=rdma.parse_ibv_devinfo(text.get("ibv-devinfo", "")),
        units=_units(target, sections.get("units")),
        # A host render gives no files is checked too: for leftovers only (the listing section).
        drift_checked=target.drift_checked and ("hashes" in text or not target.expected_files) and "listing" in text,
        holds_vip=bool(text["vip"].strip()) if target.vip and "vip" in text else None,
    )
    if status.drift_checked:
        root = target.root
        hashes = {path[len(root) :]: digest for path, digest in drift.parse_hashes(text.get("hashes", "")).items()}
        modes = {path[len(root) :]: mode for path, mode in drift.parse_modes(text.get("modes", "")).items()}
        listing = [line[len(root) :] for line in text.get("listing", "").splitlines() if line.strip()]
        status.drift = drift.compare(target.expected_files, hashes, modes, listing)
    if "end" not in sections:
        failures.append("the status script stopped before its end (output cut short)")
    return status, failures
