"""What ``xpdctl up`` reports for a multi-host cluster (the ``-o json`` document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from xpdctl.provision.models import HostResult
from xpdctl.remote.applier import HostOutcome
from xpdctl.verify.kvpath import PairReport
from xpdctl.verify.smoke import SmokeResult

Stage = Literal["provision", "engines", "kv", "router", "smoke", "done"]


class ServiceHealth(BaseModel):
    name: str
    role: str
    host: str
    url: str | None
    # "healthy"; why not ("refused", "HTTP 503", "timeout"); or "not checked: <why>" (its host failed).
    health: str


class HostDeploy(BaseModel):
    host: str
    provision: HostResult = Field(description="the playbook run on this host: counts, failing task and message")
    targeted: bool = Field(description="false when --limit left the host out (its services are only probed)")
    applied: HostOutcome | None = Field(None, description="what the service applier changed on the host (with "
                                        "--check: would change, with diffs); none where provisioning failed")
    services: list[ServiceHealth] = []


class DeployResult(BaseModel):
    cluster: str
    check: bool
    ok: bool = Field(description="every targeted host provisioned, every checked service healthy, smoke answered")
    reached: Stage = Field(description="the last stage that ran: provision, engines, kv, router, smoke, done")
    hosts: dict[str, HostDeploy]
    kv_pairs: list[PairReport] = []
    router_url: str | None = None
    model: str
    smoke: SmokeResult | None = None
    curl: str | None = None
    problems: list[str] = Field(default_factory=list, description="one line each: what is wrong, what to do")
    retry: str | None = Field(None, description="the --limit that re-runs only the hosts whose provisioning failed")
    artifacts: str = Field(description="ansible-runner's artifact directory (events, full output)")
    rendered: str = Field(description="the render directory whose files were installed")

    @property
    def changed(self) -> dict[str, int]:
        return {name: host.provision.changed for name, host in self.hosts.items()}
