"""What to observe on each host: where to reach it and what it should be running.

Built from the inventory (SSH settings, expected GPUs and NICs) and render's output directory
(``manifest.json`` for services and ports, ``hosts/<host>/`` for the files drift compares).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import InputError
from xpdctl.observe.drift import owned_globs, rendered_files


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SshTarget(_Model):
    user: str = "root"
    port: int = 22
    key: str | None = None


class ServiceTarget(_Model):
    name: str
    role: str
    unit: str
    port: int | None = None
    # Router admin API token, when render put one in the router's config.
    admin_token: str | None = None


class HostTarget(_Model):
    name: str
    address: str
    ssh: SshTarget = SshTarget()
    # sysfs vendor id of the GPUs the inventory says the host has, and how many; None: no check.
    gpu_pci_vendor: str | None = None
    gpu_count: int | None = None
    nics: list[str] = []
    services: list[ServiceTarget] = []
    expected_files: dict[str, str] = {}  # absolute host path -> sha256 of the rendered file
    owned_globs: list[str] = []
    drift_checked: bool = False
    # Prefix of every host path, for simulated hosts that share one filesystem (benchmarks).
    root: str = ""

    def url(self, service: ServiceTarget) -> str:
        return f"http://{self.address}:{service.port}"


def _load_manifest(rendered_dir: Path) -> dict:
    path = rendered_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path} does not exist; run `xpdctl render -i INVENTORY -o {rendered_dir}` first") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); render it again") from exc


def _router_token(host_dir: Path) -> str | None:
    """The admin token from the rendered router config (the token itself or its rendered token file)."""
    for config_path in sorted(host_dir.rglob("router*.yaml")):
        admin = (yaml.safe_load(config_path.read_text()) or {}).get("admin") or {}
        if admin.get("token"):
            return str(admin["token"])
        token_file = admin.get("token_file")
        if token_file and (host_dir / str(token_file).lstrip("/")).is_file():
            return (host_dir / str(token_file).lstrip("/")).read_text().strip() or None
    return None


def targets_from(inventory, rendered_dir: Path) -> tuple[str, list[HostTarget]]:
    """(cluster name, one target per inventory host) from an :class:`~xpdctl.inventory.schema.Inventory`."""
    from xpdctl.vendors import vendor_profiles

    manifest = _load_manifest(rendered_dir)
    profiles = vendor_profiles()
    targets = []
    for host in inventory.hosts:
        host_dir = rendered_dir / "hosts" / host.name
        entry = manifest.get("hosts", {}).get(host.name, {})
        token = _router_token(host_dir) if host_dir.is_dir() else None
        services = [
            ServiceTarget(
                name=service["name"],
                role=service["role"],
                unit=service.get("unit") or f"{service['name']}.service",
                port=service.get("port"),
                admin_token=token if service["role"] == "router" else None,
            )
            for service in entry.get("services", [])
        ]
        expected = rendered_files(host_dir)
        profile = profiles.get(host.vendor) if host.vendor else None
        ssh = host.ssh or inventory.defaults.ssh
        targets.append(
            HostTarget(
                name=host.name,
                address=entry.get("address") or host.address,
                ssh=SshTarget(user=ssh.user, port=ssh.port, key=ssh.key),
                gpu_pci_vendor=profile.pci_vendor_id if profile and host.gpu else None,
                gpu_count=host.gpu.count if profile and profile.pci_vendor_id and host.gpu else None,
                nics=list(host.nics),
                services=services,
                expected_files=expected,
                owned_globs=owned_globs(list(expected), inventory.cluster),
                drift_checked=host_dir.is_dir(),
            )
        )
    return manifest.get("cluster") or inventory.cluster, targets
