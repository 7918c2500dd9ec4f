"""``status`` of a local cluster: each service's process state and whether it answers ``/health``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from xpdctl.identity.record import as_status, recorded
from xpdctl.local.cluster import LATE_ROLES, open_cluster, router_url
from xpdctl.status_model import Stacks
from xpdctl.units.rendered import rendered_services
from xpdctl.verify.health import probe


class ServiceStatus(BaseModel):
    name: str
    role: str
    host: str
    url: str | None
    state: str  # running | starting | restarting | failed | stopped
    health: str  # healthy | refused | HTTP 503 | ... | - (not probed: not running)
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None
    last_exit: str | None = None
    log: str | None = None


class RouterStatus(BaseModel):
    url: str
    state: str
    health: str


class ClusterStatus(BaseModel):
    cluster: str
    state_dir: str
    healthy: bool
    router: RouterStatus
    services: list[ServiceStatus]
    stacks: Stacks | None = None  # the engine stacks `up` read, as in the hosts form of status


def cluster_status(inventory: Path) -> ClusterStatus:
    cluster = open_cluster(inventory)
    running = {u.name: u for u in cluster.executor.services()}
    tree = cluster.rendered
    deployed = rendered_services(tree) if (tree / "manifest.json").exists() else []
    services = []
    for s in deployed:
        unit = running.get(s.desired.unit.name)
        state = unit.state if unit else "stopped"
        health = probe(s.url) if s.url and state == "running" else "-"
        services.append(ServiceStatus(
            name=s.desired.unit.name, role=s.desired.role, host=s.desired.host, url=s.url, state=state,
            health=health, pid=unit.pid if unit else None, restarts=unit.restarts if unit else 0,
            started_at=unit.started_at if unit else None, last_exit=unit.last_exit if unit else None,
            log=unit.log if unit else None,
        ))
    url = router_url(cluster.plan)
    router = next((s for s in services if s.role in LATE_ROLES), None)
    return ClusterStatus(
        cluster=cluster.plan.cluster,
        state_dir=str(cluster.state_dir),
        healthy=bool(services) and all(s.state == "running" and s.health == "healthy" for s in services),
        router=RouterStatus(url=url, state=router.state if router else "not deployed",
                            health=router.health if router else "-"),
        services=services,
        stacks=as_status(found) if (found := recorded(cluster.state_dir)) else None,
    )
