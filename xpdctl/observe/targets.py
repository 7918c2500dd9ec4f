"""What to observe on each host: where to reach it and what it should be running.

Built from the inventory (SSH settings, expected GPUs and NICs) and render's output
(``manifest.json`` for services and URLs, ``hosts/<host>/...`` for the files drift compares).
"""

from __future__ import annotations

import json
import posixpath

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import InputError
from xpdctl.inventory.schema import Inventory
from xpdctl.observe.drift import ExpectedFile, host_files, owned_globs
from xpdctl.render import HOSTS, MANIFEST, RenderedFile
from xpdctl.ssh.target import HostLink, SshTarget


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceTarget(_Model):
    name: str
    role: str
    unit: str
    port: int | None = None
    url: str | None = None  # base URL this machine reaches the service at
    # Router admin API token, when render put one in the router's config.
    admin_token: str | None = None
    # An engine's internal API key (VLLM_API_KEY in its rendered env file): vLLM checks it under /v1.
    api_key: str | None = None
    # The router's https URL is verified against this CA (render's manifest); None: the system's store.
    ca_pem: str | None = None
    image: str | None = None  # the image render pinned, for a service run as a container (named as the service)


class HostTarget(HostLink):
    # sysfs vendor id of the GPUs the inventory says the host has, and how many; None: no check.
    gpu_pci_vendor: str | None = None
    gpu_count: int | None = None
    nics: list[str] = []
    services: list[ServiceTarget] = []
    expected_files: dict[str, ExpectedFile] = {}  # absolute host path -> the rendered file's hash and mode
    owned_globs: list[str] = []
    drift_checked: bool = False
    vip: str | None = None  # router.vip.address, on the router hosts that may hold it


def _manifest(files: dict[str, RenderedFile]) -> dict:
    try:
        return json.loads(files[MANIFEST].content)
    except KeyError as exc:
        raise InputError(f"render output has no {MANIFEST}; run `xpdctl render -i INVENTORY -o DIR` again") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{MANIFEST}: not valid JSON ({exc}); run `xpdctl render` again") from exc


def client_url(files: dict[str, RenderedFile]) -> str | None:
    """Where clients reach the router (render's manifest): router.vip's address when it has one, else
    the first router host's."""
    return _manifest(files).get("router", {}).get("url")


def _router_token(files: dict[str, RenderedFile], host: str, config_rel: str | None) -> str | None:
    """The admin token from the rendered router config: the token itself, or its file if render wrote it."""
    if not config_rel or config_rel not in files:
        return None
    admin = (yaml.safe_load(files[config_rel].content) or {}).get("admin") or {}
    if admin.get("token"):
        return str(admin["token"])
    token_file = files.get(f"{HOSTS}/{host}{admin.get('token_file')}") if admin.get("token_file") else None
    return (token_file.content.strip() or None) if token_file else None


def _env_value(files: dict[str, RenderedFile], env_file: str | None, name: str) -> str | None:
    """``name``'s value in a rendered env file (``KEY=value`` lines), if render wrote one."""
    rendered = files.get(env_file) if env_file else None
    if rendered is None:
        return None
    return next((line.split("=", 1)[1] for line in rendered.content.splitlines() if line.startswith(f"{name}=")), None)


def _service(files: dict[str, RenderedFile], host: str, address: str, entry: dict,
             ca_pem: str | None) -> ServiceTarget:
    port = entry.get("port")
    return ServiceTarget(
        name=entry["name"],
        role=entry["role"],
        # The manifest names the unit by its rendered path; on the host it is the file's name.
        unit=posixpath.basename(entry.get("unit") or f"{entry['name']}.service"),
        port=port,
        url=entry.get("url") or (f"http://{address}:{port}" if port else None),
        admin_token=_router_token(files, host, entry.get("config")) if entry["role"] == "router" else None,
        api_key=_env_value(files, entry.get("env_file"), "VLLM_API_KEY"),
        ca_pem=ca_pem if entry["role"] == "router" else None,
        image=entry.get("image"),
    )


def targets_from(inventory: Inventory, files: dict[str, RenderedFile]) -> tuple[str, list[HostTarget]]:
    """(cluster name, one target per inventory host) from the inventory and render's output for it."""
    from xpdctl.vendors import vendor_profiles

    manifest = _manifest(files)
    profiles = vendor_profiles()
    vip = inventory.router.vip.address if inventory.router.vip else None
    targets = []
    for host in inventory.hosts:
        entry = manifest.get("hosts", {}).get(host.name, {})
        address = entry.get("address") or host.address
        expected = host_files(files, host.name)
        profile = profiles.get(host.vendor) if host.vendor else None
        checks_gpus = profile is not None and profile.pci_vendor_id is not None and host.gpu is not None
        ssh = host.ssh or inventory.defaults.ssh
        targets.append(
            HostTarget(
                name=host.name,
                address=address,
                ssh=SshTarget(user=ssh.user, port=ssh.port, key=ssh.key),
                gpu_pci_vendor=profile.pci_vendor_id if checks_gpus else None,
                gpu_count=host.gpu.count if checks_gpus else None,
                nics=list(host.nics),
                services=[_service(files, host.name, address, service, manifest.get("router", {}).get("ca_pem"))
                          for service in entry.get("services", [])],
                expected_files=expected,
                owned_globs=owned_globs(inventory.cluster),
                drift_checked=True,
                vip=vip if host.name in inventory.router.hosts else None,
            )
        )
    return manifest.get("cluster") or inventory.cluster, targets
