"""Preflight: judge one host's raw facts against what the inventory and plan expect.

The playbook's ``xpd_host_facts`` module reads the facts on the host (read-only); the preflight role
hands them here through the ``xpd_preflight_report`` filter and fails the host when a check fails,
before any role changes it. Every check yields ``ok``, ``warn`` (works, but look) or ``fail`` with a
detail line that says what was found and what to do.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xpdctl.probes.host import parse_os_release
from xpdctl.probes.pci import parse_sysfs_listing

Status = Literal["ok", "warn", "fail"]
_GIB = 1024**3


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Headers(_Model):
    installed: bool
    package: str = ""
    candidate: str | None = None
    lists_refreshed: bool = False  # False: the candidate comes from package lists that may be stale


class NicState(_Model):
    kind: Literal["rdma", "net", "missing"]
    ports: dict[str, str] = {}


class DiskSpace(_Model):
    path: str
    measured: str
    device: int
    free_bytes: int


class HostFacts(_Model):
    """What ``xpd_host_facts`` returns."""

    os_release: str = ""
    kernel: str = ""
    headers: Headers
    pci: str = ""
    nics: dict[str, NicState] = {}
    disk: list[DiskSpace] = []
    secure_boot: Literal["enabled", "disabled", "no-uefi", "unknown"] = "unknown"
    listening: list[int] = []
    units: dict[str, str] = {}


class DiskNeed(_Model):
    path: str
    gib: float


class PortNeed(_Model):
    name: str
    unit: str
    port: int | None = None


class Expectations(_Model):
    """What the host should look like, from the inventory and the rendered plan."""

    os_allowed: list[str]
    gpu_vendor: str = ""
    gpu_model: str = ""
    gpu_count: int = 0
    gpu_models: dict[str, list[str]] = Field(default_factory=dict, description="model -> PCI device IDs")
    nics: list[str] = []
    disk: list[DiskNeed] = []
    secure_boot_blocking: bool = False
    ports: list[PortNeed] = []


class Check(BaseModel):
    name: str
    status: Status
    detail: str


class HostReport(BaseModel):
    ok: bool
    checks: list[Check]


def _os(facts: HostFacts, expect: Expectations) -> Check:
    release = parse_os_release(facts.os_release)
    found = f"{release.get('ID', '?')} {release.get('VERSION_ID', '?')}"
    if found in expect.os_allowed:
        return Check(name="os", status="ok", detail=found)
    return Check(
        name="os",
        status="fail",
        detail=f"{found} is not one of {', '.join(expect.os_allowed)}; install a supported release "
        "or add it to preflight_os_allowed once tested",
    )


def _kernel_headers(facts: HostFacts, expect: Expectations) -> Check:
    kernel = facts.kernel
    if not expect.gpu_vendor:
        return Check(name="kernel_headers", status="ok", detail=f"{kernel} (no GPU driver to build)")
    if facts.headers.installed:
        return Check(name="kernel_headers", status="ok", detail=f"{kernel}: installed")
    if facts.headers.candidate:
        return Check(
            name="kernel_headers",
            status="ok",
            detail=f"{kernel}: {facts.headers.package} {facts.headers.candidate} will be installed",
        )
    if not facts.headers.lists_refreshed:
        return Check(
            name="kernel_headers",
            status="warn",
            detail=f"{kernel}: headers not installed and apt's package lists (not refreshed in --check) do not "
            f"offer {facts.headers.package}; the driver's DKMS build fails unless a refresh finds them",
        )
    return Check(
        name="kernel_headers",
        status="fail",
        detail=f"no headers for the running kernel {kernel} and apt has no {facts.headers.package or 'package'}: "
        "the driver's DKMS build would fail; boot a kernel whose headers the archive has, or add their source",
    )


def _gpus(facts: HostFacts, expect: Expectations) -> Check:
    gpus = [d for d in parse_sysfs_listing(facts.pci) if d.kind == "gpu"]
    by_vendor: dict[str, list[str]] = defaultdict(list)
    for device in gpus:
        by_vendor[device.vendor or device.vendor_id].append(device.device_id)
    found = ", ".join(f"{len(ids)} x {vendor} ({'/'.join(sorted(set(ids)))})" for vendor, ids in sorted(by_vendor.items()))
    found = found or "none"
    if not expect.gpu_vendor:
        return Check(name="gpus", status="ok", detail=f"found {found}; none expected")
    mine = by_vendor.get(expect.gpu_vendor, [])
    wanted = f"{expect.gpu_count} x {expect.gpu_vendor} {expect.gpu_model}"
    if len(mine) != expect.gpu_count:
        return Check(
            name="gpus",
            status="fail",
            detail=f"found {found} on the PCI bus, the inventory says {wanted}; fix the host's vendor or "
            "gpu.count in the inventory, or look for GPUs the firmware does not show (lspci, BIOS, reseat)",
        )
    known = {model.lower(): ids for model, ids in expect.gpu_models.items()}
    ids = known.get(expect.gpu_model.lower())
    if ids is None:
        return Check(
            name="gpus",
            status="warn",
            detail=f"found {found}; model {expect.gpu_model} has no PCI IDs in preflight_gpu_models, "
            "so only vendor and count were checked",
        )
    others = sorted({device for device in mine if device not in ids})
    if others:
        return Check(
            name="gpus",
            status="fail",
            detail=f"found {found}, but {expect.gpu_model} has PCI device IDs {'/'.join(ids)}; "
            "fix gpu.model in the inventory",
        )
    return Check(name="gpus", status="ok", detail=f"found {found} = {wanted}")


def _port_up(kind: str, state: str) -> bool:
    # RDMA ports read "4: ACTIVE" (INIT/ARMED mean no subnet manager or link yet); interfaces read "up".
    if kind == "rdma":
        return state.split(":")[-1].strip().upper() == "ACTIVE"
    return state.strip().lower() == "up"


def _nics(facts: HostFacts, expect: Expectations) -> Check:
    if not expect.nics:
        return Check(name="nics", status="ok", detail="none declared")
    problems, seen = [], []
    for raw in expect.nics:
        name = raw.split(":")[0]
        state = facts.nics.get(name, NicState(kind="missing"))
        if state.kind == "missing":
            problems.append(f"{name} missing")
            continue
        down = [f"{name} port {port} {value or 'unknown'}" for port, value in sorted(state.ports.items())
                if not _port_up(state.kind, value)]
        if down or not state.ports:
            problems.extend(down or [f"{name} has no ports"])
        else:
            seen.append(f"{name} up")
    if problems:
        return Check(
            name="nics",
            status="fail",
            detail=f"{', '.join(problems)}; check cabling and the switch port (`ibv_devinfo`), "
            "or fix nics in the inventory",
        )
    return Check(name="nics", status="ok", detail=", ".join(seen))


def _disk(facts: HostFacts, expect: Expectations) -> Check:
    if not expect.disk:
        return Check(name="disk", status="ok", detail="nothing to store")
    space = {entry.path: entry for entry in facts.disk}
    need_by_device: dict[int, float] = defaultdict(float)
    paths_by_device: dict[int, list[str]] = defaultdict(list)
    for need in expect.disk:
        entry = space.get(need.path)
        if entry is None:
            return Check(name="disk", status="fail", detail=f"free space of {need.path} was not measured")
        need_by_device[entry.device] += need.gib
        paths_by_device[entry.device].append(need.path)
    problems, summary = [], []
    for device, gib in need_by_device.items():
        entry = next(e for e in facts.disk if e.device == device)
        free = entry.free_bytes / _GIB
        paths = " + ".join(paths_by_device[device])
        summary.append(f"{paths}: {free:.0f} GiB free, {gib:.0f} needed")
        if free < gib:
            problems.append(f"{paths} need {gib:.0f} GiB, {entry.measured} has {free:.0f} GiB free")
    if problems:
        return Check(name="disk", status="fail", detail="; ".join(problems) + "; free space or mount a larger disk")
    return Check(name="disk", status="ok", detail="; ".join(summary))


def _secure_boot(facts: HostFacts, expect: Expectations) -> Check:
    state = facts.secure_boot
    if state != "enabled":
        return Check(name="secure_boot", status="ok", detail=state)
    if expect.secure_boot_blocking:
        return Check(
            name="secure_boot",
            status="fail",
            detail="enabled: the kernel refuses the unsigned DKMS module; disable Secure Boot in the "
            "firmware or enroll the DKMS signing key (mokutil --import), then re-run",
        )
    return Check(name="secure_boot", status="warn", detail="enabled: only signed kernel modules load")


def _ports(facts: HostFacts, expect: Expectations) -> Check:
    listening = set(facts.listening)
    problems, ours = [], []
    for need in expect.ports:
        if need.port is None or need.port not in listening:
            continue
        unit = need.unit.rsplit("/", 1)[-1]
        if facts.units.get(unit) == "active":
            ours.append(f"{need.port} ({need.name}, running)")
        else:
            problems.append(f"port {need.port} for {need.name} is taken by another process")
    if problems:
        return Check(
            name="ports",
            status="fail",
            detail="; ".join(problems) + "; stop that process (`ss -ltnp`) or change the port in the inventory",
        )
    needed = [need.port for need in expect.ports if need.port is not None]
    detail = f"{len(needed)} free" + (f", held by our services: {', '.join(ours)}" if ours else "")
    return Check(name="ports", status="ok", detail=detail)


_CHECKS = (_os, _kernel_headers, _gpus, _nics, _disk, _secure_boot, _ports)


def evaluate(facts: HostFacts, expect: Expectations) -> HostReport:
    checks = [check(facts, expect) for check in _CHECKS]
    return HostReport(ok=all(check.status != "fail" for check in checks), checks=checks)
