"""Decide what in an observed host is a problem, with a hint a person can act on.

Errors make ``status`` exit non-zero; warnings (drift, a router without an admin token) do not.
"""

from __future__ import annotations

from xpdctl.observability import alerts
from xpdctl.observe.targets import HostTarget
from xpdctl.status_model import HostStatus, Problem, VipStatus

# What vendor tools print when a driver is broken in a known way -> what to do about it (REFERENCE 4).
KNOWN_TOOL_FAILURES: tuple[tuple[str, str], ...] = (
    (
        "Driver/library version mismatch",
        "the loaded nvidia module is older than the installed driver (a silent upgrade?): reboot, then hold "
        "the driver and fabric manager packages (apt-mark hold) and disable unattended-upgrades",
    ),
    (
        "couldn't communicate with the NVIDIA driver",
        "the nvidia kernel module is not loaded: check `dkms status`, Secure Boot and that nouveau is blacklisted",
    ),
    (
        "Unable to detect any GPU devices",
        "the amdgpu module is not loaded: check `dkms status` (kernel headers must match the running kernel), then reboot",
    ),
    ("did not answer in time", "the tool hangs: check dmesg for Xid or GPU reset errors; the GPU may need a reset"),
)


def _tool_hint(failure: str) -> str:
    return next(
        (hint for text, hint in KNOWN_TOOL_FAILURES if text in failure),
        "run the tool on the host to see the full message",
    )


# A unit's role -> the alert that fires when it is down.
_DOWN_ALERT = {"prefill": alerts.ENGINE_DOWN, "decode": alerts.ENGINE_DOWN, "router": alerts.ROUTER_DOWN,
               "kv-agent": alerts.KV_AGENT_DOWN}


def _error(host: str, what: str, hint: str, alert: str | None = None) -> Problem:
    return Problem(severity="error", host=host, what=what, hint=hint, alert=alert, metric=alerts.METRIC.get(alert))


def _warning(host: str, what: str, hint: str, alert: str | None = None) -> Problem:
    return Problem(severity="warning", host=host, what=what, hint=hint, alert=alert, metric=alerts.METRIC.get(alert))


def _hardware(target: HostTarget, status: HostStatus) -> list[Problem]:
    found: list[Problem] = []
    name = target.name
    gpus = status.accelerators.gpus
    if target.gpu_pci_vendor is not None:
        on_bus = [d for d in status.pci if d.kind == "gpu" and d.vendor_id == "0x" + target.gpu_pci_vendor.lower()]
        if target.gpu_count is not None and len(on_bus) < target.gpu_count:
            found.append(
                _error(
                    name,
                    f"{len(on_bus)} of {target.gpu_count} GPUs on the PCI bus",
                    "check the inventory's gpu.count, then the hardware (reseat, BMC event log)",
                )
            )
        if len(gpus) < len(on_bus):
            found.append(
                _error(
                    name,
                    f"the driver sees {len(gpus)} GPUs, the PCI bus {len(on_bus)}",
                    "a GPU fell off the bus or the driver is not loaded: check dmesg and the vendor tool",
                )
            )
    for gpu in gpus:
        if gpu.fabric_state is not None and (
            gpu.fabric_state != "Completed" or gpu.fabric_status not in (None, "Success")
        ):
            found.append(
                _error(
                    name,
                    f"GPU {gpu.index} ({gpu.bus_id}) NVSwitch fabric is {gpu.fabric_state}"
                    + (f" ({gpu.fabric_status})" if gpu.fabric_status else ""),
                    "check that nvidia-fabricmanager is active and at exactly the driver's version",
                )
            )
        if gpu.ecc_errors_uncorrected:
            found.append(
                _error(
                    name,
                    f"GPU {gpu.index} ({gpu.bus_id}) has {gpu.ecc_errors_uncorrected} uncorrectable ECC errors",
                    "drain the host's engines and reset or replace the GPU",
                )
            )
    ports = {(port.device, port.port): port for port in status.rdma}
    for nic in target.nics:
        device, _, port_text = nic.partition(":")
        port = ports.get((device, int(port_text or 1)))
        if port is None:
            found.append(
                _error(name, f"RDMA device {nic} not found", "check the inventory's nics and the driver (ibv_devinfo)")
            )
        elif port.state != "PORT_ACTIVE":
            found.append(
                _error(name, f"RDMA port {nic} is {port.state}", "check the cable, switch port and link layer")
            )
    return found


def _services(target: HostTarget, status: HostStatus) -> list[Problem]:
    found: list[Problem] = []
    name = target.name
    for unit in status.units:
        if unit.active != "active":
            found.append(
                _error(
                    name,
                    f"unit {unit.unit} is {unit.active}",
                    f"see `journalctl -u {unit.unit}` on {name}, then start it",
                    _DOWN_ALERT.get(unit.role),
                )
            )
    for engine in status.engines:
        if not engine.healthy:
            found.append(
                _error(name, f"{engine.service} unhealthy at {engine.url}: {engine.error}", "check its unit and log",
                       alerts.ENGINE_DOWN)
            )
    for agent in status.kv_agents:
        if not agent.reachable:
            found.append(_error(name, f"KV agent {agent.service}: {agent.error}", "check the kv-agent unit and log",
                                alerts.KV_AGENT_DOWN))
        for pair in agent.pairs:
            # Both hosts' agents list a pair; it is reported once, by the host that measured it.
            if not pair.ok and pair.measured_by in (None, name):
                found.append(
                    _error(
                        name,
                        f"KV pair {pair.prefill_url} -> {pair.decode_url} broken: {pair.reason}",
                        "the router skips this pair; see the KV agent's /pairs for details",
                        alerts.KV_PAIR_BROKEN,
                    )
                )
    for router in status.routers:
        if not router.healthy:
            found.append(
                _error(
                    name,
                    f"router {router.service} not serving: {router.error}",
                    "check the router unit and log, then its backends (engines, KV pairs)",
                    alerts.NO_USABLE_PAIR if router.reachable else alerts.ROUTER_DOWN,
                )
            )
        if router.reachable and router.backends_error:
            found.append(
                _warning(
                    name,
                    f"router {router.service} backends unknown: {router.backends_error}",
                    "see the router's admin API",
                )
            )
        for backend in router.backends:
            if not backend.healthy:
                found.append(
                    _error(
                        name, f"router backend {backend.url} ({backend.pool}) is {backend.state}", "check that engine",
                        alerts.BACKEND_UNHEALTHY,
                    )
                )
            elif backend.draining:
                found.append(
                    _warning(
                        name,
                        f"router backend {backend.url} ({backend.pool}) is draining",
                        "an upgrade may be under way; `POST /admin/backends/undrain` returns it to service",
                    )
                )
    return found


def _images(target: HostTarget, status: HostStatus) -> list[Problem]:
    """A container that runs another image than render pinned (an upgrade not finished, or a hand-run
    container); a host whose dockerd cannot be read is an error only through its units."""
    found = []
    for image in status.containers:
        pinned = image.pinned.rsplit("@", 1)[-1]
        if image.digest is not None and image.digest != pinned:
            found.append(_warning(target.name, f"{image.service} runs {image.digest}, render pins {pinned}",
                                  "run `xpdctl up` (or finish the `xpdctl upgrade`) to run the pinned image"))
    return found


def judge(target: HostTarget, status: HostStatus, failures: list[str]) -> list[Problem]:
    if not status.reachable:
        return [
            _error(
                target.name,
                f"unreachable over SSH: {status.error}",
                f"check `ssh -p {target.ssh.port} {target.ssh.user}@{target.address} true` from this machine",
            )
        ]
    found = [_error(target.name, line, _tool_hint(line)) for line in failures]
    found += _hardware(target, status) + _services(target, status) + _images(target, status)
    if status.drift:
        paths = ", ".join(f"{d.path} ({d.state})" for d in status.drift[:3])
        more = f" and {len(status.drift) - 3} more" if len(status.drift) > 3 else ""
        found.append(
            _warning(
                target.name,
                f"{len(status.drift)} files differ from render: {paths}{more}",
                "run `xpdctl up` to apply the plan",
                # Prometheus sees drift of the router's config only (the sha256 the router reports).
                alerts.ROUTER_CONFIG_DRIFT if any(d.path.endswith("/router.yaml") for d in status.drift) else None,
            )
        )
    return found


def judge_vip(address: str, router_hosts: list[HostStatus]) -> tuple[VipStatus, list[Problem]]:
    """Which router hosts hold ``address`` (router.vip), and a problem unless exactly one does."""
    holders = [host.name for host in router_hosts if host.holds_vip]
    unknown = [host.name for host in router_hosts if host.holds_vip is None]
    problems = []
    if len(holders) > 1:
        problems.append(Problem(
            severity="error", what=f"{address} is on {' and '.join(holders)} at once: clients reach either",
            hint="the router hosts do not hear each other's VRRP adverts (IP protocol 112, unicast): check the "
                 "network between them, then `journalctl -u keepalived` on each"))  # fmt: skip
    elif not holders and unknown:
        problems.append(Problem(
            severity="warning", what=f"no reachable router host holds {address}; {', '.join(unknown)} did not answer SSH",
            hint="the address may be on a host SSH cannot reach: see its own problem"))  # fmt: skip
    elif not holders:
        problems.append(Problem(
            severity="error", what=f"no router host holds {address}: clients using it get no answer",
            hint="keepalived gives the address only to a host whose router answers /health: check the routers "
                 "above, then `systemctl status keepalived` and `journalctl -u keepalived` on the router hosts"))  # fmt: skip
    return VipStatus(address=address, holders=holders), problems
