"""Observe a whole cluster: every host at once, one SSH round trip and a few HTTP requests each."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from xpdctl.identity.record import as_status, recorded
from xpdctl.inventory.load import LoadedInventory
from xpdctl.inventory.routertls import client_context
from xpdctl.observe import http
from xpdctl.observe.hoststate import host_status
from xpdctl.observe.images import running_images
from xpdctl.observe.judge import judge, judge_vip
from xpdctl.observe.script import build_script
from xpdctl.observe.targets import HostTarget, ServiceTarget, targets_from
from xpdctl.plan import ENGINE_ROLES
from xpdctl.ssh.sections import new_marker, split_sections
from xpdctl.paths import cluster_state_path
from xpdctl.ssh.transport import SshTransport, Transport, cluster_ssh
from xpdctl.status_model import ClusterStatus, HostStatus, Problem


def _engine(session: aiohttp.ClientSession, service: ServiceTarget, url: str):
    return http.probe_engine(session, service=service.name, role=service.role, url=url, api_key=service.api_key)


def _router(session: aiohttp.ClientSession, service: ServiceTarget, url: str):
    return http.probe_router(session, service=service.name, url=url, token=service.admin_token,
                             context=client_context(service.ca_pem))


def _kv_agent(session: aiohttp.ClientSession, service: ServiceTarget, url: str):
    return http.probe_kv_agent(session, service=service.name, url=url)


# Service role -> (HostStatus field, HTTP probe). Roles not listed get none (their unit state still shows).
ROLE_PROBES = {
    **{role: ("engines", _engine) for role in ENGINE_ROLES},
    "router": ("routers", _router),
    "kv-agent": ("kv_agents", _kv_agent),
}


async def _ssh_part(target: HostTarget, transport: Transport, timeout_s: float) -> tuple[HostStatus, list[str]]:
    marker = new_marker()
    script = build_script(
        marker,
        units=[service.unit for service in target.services],
        files=[target.root + path for path in target.expected_files],
        extra_globs=[target.root + pattern for pattern in target.owned_globs],
        # Leave the host time to report a hung tool before the SSH call itself gives up.
        probe_timeout_s=max(1, int(timeout_s * 0.6)),
        vip=target.vip,
    )
    result = await transport.run(target, script, timeout_s)
    sections = split_sections(result.stdout, marker)
    if not sections:
        if result.rc is None:
            error = f"no answer within {timeout_s:g} s"
        else:
            error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.rc}"
        return HostStatus(name=target.name, address=target.address, reachable=False, error=error), []
    return host_status(target, sections)


async def _http_part(target: HostTarget, session: aiohttp.ClientSession) -> dict[str, list]:
    probes = []
    for service in target.services:
        url = service.url or (f"http://{target.address}:{service.port}" if service.port else None)
        if service.role in ROLE_PROBES and url is not None:
            field, probe = ROLE_PROBES[service.role]
            probes.append((field, probe(session, service, url)))
    results = await asyncio.gather(*(coro for _, coro in probes))
    grouped: dict[str, list] = {field: [] for field, _ in ROLE_PROBES.values()}
    for (field, _), result in zip(probes, results):
        grouped[field].append(result)
    return grouped


async def observe_host(
    target: HostTarget, transport: Transport, session: aiohttp.ClientSession, *, ssh_timeout_s: float
) -> HostStatus:
    # Images are read with the Docker SDK through SSH: hosts a status reaches over SSH only.
    images = asyncio.to_thread(running_images, transport, target, ssh_timeout_s) if isinstance(transport, SshTransport) \
        else asyncio.sleep(0, [])
    (status, failures), services, containers = await asyncio.gather(
        _ssh_part(target, transport, ssh_timeout_s), _http_part(target, session), images
    )
    # HTTP answers come from this machine's view, so they are reported even for a host SSH cannot reach.
    status = status.model_copy(update={**services, "containers": containers if status.reachable else []})
    status.problems = judge(target, status, failures)
    return status


async def observe_targets(
    cluster: str,
    targets: list[HostTarget],
    transport: Transport,
    *,
    ssh_timeout_s: float = 10.0,
    http_timeout_s: float = 3.0,
    max_parallel_hosts: int = 64,
) -> ClusterStatus:
    started = time.monotonic()
    observed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    gate = asyncio.Semaphore(max_parallel_hosts)
    # No connection limit: a cluster-wide probe opens a few connections per service at once.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=http_timeout_s, connect=min(http_timeout_s, 2.0))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(target: HostTarget) -> HostStatus:
            async with gate:
                return await observe_host(target, transport, session, ssh_timeout_s=ssh_timeout_s)

        hosts = await asyncio.gather(*(one(target) for target in targets))
    problems = [problem for host in hosts for problem in host.problems]
    vip = None
    address = next((target.vip for target in targets if target.vip), None)
    if address is not None:
        vip, vip_problems = judge_vip(address, [host for host, target in zip(hosts, targets) if target.vip])
        problems += vip_problems
    return ClusterStatus(
        cluster=cluster,
        observed_at=observed_at,
        duration_s=round(time.monotonic() - started, 3),
        healthy=not any(problem.severity == "error" for problem in problems),
        hosts=list(hosts),
        vip=vip,
        problems=problems,
    )


def observe_cluster(
    inventory: LoadedInventory, rendered_dir: Path | None = None, *, transport: Transport | None = None, **options
) -> ClusterStatus:
    """The observed state of every host of ``inventory``, with drift against render's output.

    Drift compares with ``rendered_dir`` (an earlier ``xpdctl render -o DIR``) when given, else with
    what render produces now from the inventory and this environment's secrets. ``options`` are those
    of :func:`observe_targets` (timeouts, parallelism). An unreachable or unhealthy host never raises:
    it is in the result's ``problems``.
    """
    from xpdctl.plan import build_plan
    from xpdctl.render import read_tree, render_files

    if rendered_dir is not None:
        files = read_tree(Path(rendered_dir))
    else:
        files = render_files(build_plan(inventory, os.environ))
    cluster, targets = targets_from(inventory.inventory, files)
    status = asyncio.run(observe_targets(cluster, targets, transport or cluster_ssh(cluster, record=False), **options))
    return with_recorded_stacks(status, recorded(cluster_state_path(cluster)))


def with_recorded_stacks(status: ClusterStatus, found: dict | None) -> ClusterStatus:
    """Problems where a running engine's ``/version`` is not the vLLM its host's stack reported when
    ``up`` or ``upgrade`` read it (the install changed under the cluster), or where that record
    holds a pair that cannot shake hands."""
    if not found:
        return status
    stacks = as_status(found)
    extra = []
    for host in status.hosts:
        entry = found["hosts"].get(host.name, {})
        stack = entry.get("identity", {}).get("vllm_version")
        for engine in host.engines:
            if stack and engine.vllm_version and engine.vllm_version != stack:
                extra.append(Problem(
                    severity="error", host=host.name,
                    what=f"{engine.service} serves vLLM {engine.vllm_version}, but {' '.join(entry['command'])} "
                         f"reported {stack} when it was read",
                    hint="the host's stack changed under the running cluster (or the engine still runs the old "
                         "one); run `xpdctl up` again, which reads the stacks and restarts what changed"))  # fmt: skip
    for pair in found["pairs"]:
        for f in pair["factors"]:
            if not f["ok"]:
                extra.append(Problem(
                    severity="error", host=pair["decode"],
                    what=f"{pair['prefill']} -> {pair['decode']}: {f['name']}: {f['prefill']} vs {f['decode']}",
                    hint=f["why"]))  # fmt: skip
    for problem in extra:
        next((h for h in status.hosts if h.name == problem.host), status.hosts[0]).problems.append(problem)
    problems = [*status.problems, *extra]
    return status.model_copy(update={"problems": problems, "stacks": stacks,
                                     "healthy": not any(p.severity == "error" for p in problems)})
