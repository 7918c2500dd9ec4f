"""What a fleet of test hosts is: the record ``create`` writes and ``destroy``/``list`` read."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field

from xpdctl.errors import InputError

FLEET_NAME = r"^[a-z][a-z0-9]{0,7}$"  # short: interface names derived from it must fit in 15 chars


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuDecl(_Record):
    vendor: str
    count: int = Field(ge=1)
    model: str | None = None  # None: the vendor's default model in hardware.yaml

    @classmethod
    def parse_list(cls, text: str) -> list[GpuDecl | None]:
        """``nvidia:8,amd:8:MI300X,none`` -> one entry per host, in host order (``none``: no GPUs)."""
        decls: list[GpuDecl | None] = []
        for item in (part.strip() for part in text.split(",") if part.strip()):
            if item in ("none", "-"):
                decls.append(None)
                continue
            parts = item.split(":")
            if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
                raise InputError(
                    f"--gpus entry {item!r} is not VENDOR:COUNT[:MODEL]; e.g. nvidia:8,amd:8:MI300X,none"
                )
            decls.append(cls(vendor=parts[0], count=int(parts[1]), model=parts[2] if len(parts) == 3 else None))
        return decls


class HostRecord(_Record):
    name: str
    address: str
    netns: str
    veth: str  # the bridge side of the host's veth pair; the host side is eth0 in its namespace
    gpu: GpuDecl | None = None  # as declared (the inventory's view); hardware.json may differ (faults)
    nics: list[str] = []


class FleetRecord(_Record):
    # Written by xpdctl itself; fields that older releases wrote are dropped, not refused.
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=FLEET_NAME)
    subnet: str
    bridge: str
    rootfs: str
    apt_repo: str
    hosts: list[HostRecord] = []

    @property
    def gateway(self) -> str:
        """The bridge's address: where the apt repository is served and the router is reached from."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def host(self, name: str) -> HostRecord:
        for host in self.hosts:
            if host.name == name:
                return host
        raise InputError(
            f"fleet {self.name!r} has no host {name!r}; its hosts are {', '.join(h.name for h in self.hosts)}"
        )
