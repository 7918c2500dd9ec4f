"""A :class:`ClusterStatus` as one screen of text: hosts, services, router backends, problems."""

from __future__ import annotations

from collections import Counter

from xpdctl.output import table
from xpdctl.status_model import ClusterStatus, HostStatus

# Problems listed on screen; the rest are counted (all of them are in -o json).
MAX_PROBLEM_LINES = 15


def _or_dash(value) -> str:
    return "-" if value is None or value == "" else str(value)


def _gpus(host: HostStatus) -> str:
    names = Counter(gpu.name for gpu in host.accelerators.gpus)
    return ", ".join(f"{count}x {name}" for name, count in names.items()) or "-"


def _memory(host: HostStatus) -> str:
    gpus = host.accelerators.gpus
    if not gpus or any(g.memory_total_mib is None or g.memory_used_mib is None for g in gpus):
        return "-"
    used = sum(g.memory_used_mib for g in gpus) / 1024
    total = sum(g.memory_total_mib for g in gpus) / 1024
    return f"{used:.0f}/{total:.0f}G"


def _mean(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known) / len(known):.0f}" if known else "-"


def _driver(host: HostStatus) -> str:
    acc = host.accelerators
    extra = f"cuda {acc.cuda_version}" if acc.cuda_version else f"rocm {acc.rocm_version}" if acc.rocm_version else ""
    return " ".join(part for part in (acc.driver_version, extra) if part) or "-"


def _host_row(host: HostStatus) -> tuple:
    if not host.reachable:
        return (host.name, "NO", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-")
    gpus = host.accelerators.gpus
    ecc = sum(g.ecc_errors_uncorrected or 0 for g in gpus)
    active_ports = sum(p.state == "PORT_ACTIVE" for p in host.rdma)
    active_units = sum(u.active == "active" for u in host.units)
    return (
        host.name,
        "ok",
        f"{_or_dash(host.os.id)} {_or_dash(host.os.version_id)}",
        _or_dash(host.os.kernel),
        _driver(host),
        _gpus(host),
        _memory(host),
        _mean([g.utilization_pct for g in gpus]),
        ecc if gpus else "-",
        f"{active_ports}/{len(host.rdma)}" if host.rdma else "-",
        f"{active_units}/{len(host.units)}" if host.units else "-",
        len(host.drift) if host.drift_checked else "-",
    )


def _service_rows(status: ClusterStatus) -> list[tuple]:
    rows = []
    for host in status.hosts:
        units = {unit.service: unit.active for unit in host.units}
        for engine in host.engines:
            rows.append(
                (
                    engine.service,
                    host.name,
                    engine.role,
                    units.get(engine.service, "-"),
                    "ok" if engine.healthy else engine.error,
                    _or_dash(engine.vllm_version),
                    ",".join(engine.models) or "-",
                    _or_dash(engine.requests_running and int(engine.requests_running)),
                    _or_dash(engine.requests_waiting and int(engine.requests_waiting)),
                    "-" if engine.kv_cache_usage_pct is None else f"{engine.kv_cache_usage_pct:.0f}%",
                )
            )
        for agent in host.kv_agents:
            ok = sum(pair.ok for pair in agent.pairs)
            health = f"{ok}/{len(agent.pairs)} pairs ok" if agent.reachable else agent.error
            rows.append((agent.service, host.name, "kv-agent", units.get(agent.service, "-"), health) + ("",) * 5)
        for router in host.routers:
            ok = sum(backend.healthy and not backend.draining for backend in router.backends)
            backends = "backends unknown" if router.backends_error else f"{ok}/{len(router.backends)} backends serving"
            health = f"{'ok' if router.healthy else 'NOT serving'}, {backends}" if router.reachable else router.error
            rows.append((router.service, host.name, "router", units.get(router.service, "-"), health) + ("",) * 5)
    return rows


def _count(counters: dict[str, float], name: str) -> int | None:
    return None if name not in counters else int(counters[name])


def render_text(status: ClusterStatus) -> str:
    parts = [
        table(
            ["host", "ssh", "os", "kernel", "driver", "gpus", "gpu mem", "util%", "ecc", "rdma", "units", "drift"],
            [_host_row(host) for host in status.hosts],
        ),
        "",
        table(
            ["service", "host", "role", "unit", "health", "vllm", "model", "run", "wait", "kv"],
            _service_rows(status),
        ),
    ]
    backends = [
        (b.url, b.pool, b.generation, b.state, _or_dash(b.in_flight))
        for host in status.hosts
        for router in host.routers
        for b in router.backends
    ]
    if backends:
        parts += ["", table(["router backend", "pool", "generation", "state", "in flight"], backends)]
    pairs = [
        (p.prefill_url, p.decode_url, "ok" if p.ok else f"BROKEN: {p.reason}", _or_dash(p.transport_class),
         _or_dash(p.transport), _or_dash(p.measured_by))
        for host in status.hosts for agent in host.kv_agents for p in agent.pairs
        if p.measured_by in (None, host.name)  # each pair once: as its measuring agent reports it
    ]  # fmt: skip
    if pairs:
        parts += ["", table(["kv pair prefill", "decode", "kv path", "transport", "ucx lanes", "measured by"], pairs)]
    moved = [
        (e.service, _or_dash(_count(e.nixl, "vllm:nixl_xfer_time_seconds_count")),
         _or_dash(_count(e.nixl, "vllm:nixl_bytes_transferred_sum")),
         _or_dash(_count(e.nixl, "vllm:nixl_num_failed_transfers_total")))
        for host in status.hosts for e in host.engines if e.role == "decode" and e.nixl
    ]  # fmt: skip
    if moved:
        parts += ["", table(["decode engine", "nixl transfers", "nixl bytes", "failed transfers"], moved)]
    images = [(c.service, host.name, _or_dash(c.digest), c.error or ("pinned" if c.digest == c.pinned.rsplit("@", 1)[-1]
               else f"render pins {c.pinned.rsplit('@', 1)[-1]}")) for host in status.hosts for c in host.containers]  # fmt: skip
    if images:
        parts += ["", table(["container", "host", "running image digest", "state"], images)]
    if status.vip is not None:
        held = " and ".join(status.vip.holders) or "NO router host"
        parts += ["", f"virtual address {status.vip.address}: held by {held}"]
    if status.problems:
        # Errors first: they are what makes the exit status non-zero.
        ordered = sorted(status.problems, key=lambda p: p.severity != "error")
        parts += [""] + [f"{p.severity:<7} {p.host or '-'}: {p.what} ({p.hint})" + (f" [alert {p.alert}]" if p.alert else "")
                       for p in ordered[:MAX_PROBLEM_LINES]]
        if len(ordered) > MAX_PROBLEM_LINES:
            parts.append(f"... and {len(ordered) - MAX_PROBLEM_LINES} more problems (all of them with -o json)")
    errors = sum(p.severity == "error" for p in status.problems)
    warnings = len(status.problems) - errors
    verdict = "healthy" if status.healthy else "NOT healthy"
    parts += [
        "",
        f"cluster {status.cluster}: {verdict} ({errors} errors, {warnings} warnings), "
        f"{len(status.hosts)} hosts observed in {status.duration_s:.1f} s at {status.observed_at}",
    ]
    return "\n".join(parts)
