"""Where a host is and how to log in to it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SshTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = "root"
    port: int = 22
    key: str | None = None


class HostLink(BaseModel):
    """What a transport needs to run a script on a host."""

    model_config = ConfigDict(extra="forbid")

    name: str
    address: str
    ssh: SshTarget = SshTarget()
    # Prefix of every host path, for simulated hosts that share one filesystem (benchmarks).
    root: str = ""
