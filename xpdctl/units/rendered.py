"""The services a rendered tree (``render``'s output: ``manifest.json`` + ``hosts/<host>/...``) describes."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from xpdctl.errors import InputError
from xpdctl.units.state import DesiredUnit
from xpdctl.units.unitfile import HostPaths, load_unit


class ManifestService(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    role: str
    unit: str  # relative to the rendered tree
    port: int | None = None


class ManifestHost(BaseModel):
    model_config = ConfigDict(extra="allow")

    address: str
    services: list[ManifestService] = []


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    cluster: str
    hosts: dict[str, ManifestHost]


class RenderedService(BaseModel):
    """A service with what callers need besides its unit: where it answers."""

    desired: DesiredUnit
    address: str
    port: int | None

    @property
    def url(self) -> str | None:
        return f"http://{self.address}:{self.port}" if self.port else None


def load_manifest(tree: Path) -> Manifest:
    path = tree / "manifest.json"
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); render the cluster first") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not a manifest xpdctl understands: {exc}; render the cluster again") from exc


def rendered_services(tree: Path, *, unique_names: bool = True) -> list[RenderedService]:
    """``unique_names``: refuse a name on two hosts, as a local cluster must (every host is this
    machine); services on real hosts are per host (each host has its ``kv-agent``)."""
    manifest = load_manifest(tree)
    services: list[RenderedService] = []
    names: dict[str, str] = {}
    for host_name, host in manifest.hosts.items():
        host_paths = HostPaths(tree / "hosts" / host_name)
        for svc in host.services:
            if svc.name in names and unique_names:
                # Every host of a local cluster is this machine: two hosts' services may not share a name.
                raise InputError(
                    f"{tree / 'manifest.json'}: service {svc.name} is on hosts {names[svc.name]} and {host_name}; "
                    "a local cluster runs all hosts on this machine, so service names must be unique"
                )
            names[svc.name] = host_name
            unit = load_unit(tree / svc.unit, host_paths)
            services.append(
                RenderedService(
                    desired=DesiredUnit(unit=unit, host=host_name, role=svc.role),
                    address=host.address,
                    port=svc.port,
                )
            )
    return services
