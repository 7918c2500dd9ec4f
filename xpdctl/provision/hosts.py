"""Inventory + rendered plan -> an Ansible inventory whose host variables the playbooks read.

The playbooks know nothing about xpdctl's inventory format: each host gets the ``xpd_*`` variables
documented in ``playbooks/group_vars/all.yml`` (GPU vendor, model and count, NICs, images, model,
the services preflight checks), computed here from the validated inventory and
the render directory (``DIR/manifest.json`` and ``DIR/hosts/<host>/...``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xpdctl.errors import InputError
from xpdctl.gpu_catalog import find_gpu
from xpdctl.inventory.schema import Host, Inventory
from xpdctl.inventory.topology import runtime_of
from xpdctl.render import FIREWALL, KEEPALIVED
from xpdctl.vendors import vendor_profiles

_DOCKER_OPTIONS_WITH_VALUE = {"-e", "-v", "-p", "--env", "--volume", "--name", "--network", "--entrypoint"}


def read_manifest(render_dir: Path) -> dict[str, Any]:
    path = render_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; render first: xpdctl render -i INVENTORY -o {render_dir}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); render again into an empty directory") from None


def container_image(command: list[str]) -> str | None:
    """The image of a ``docker run`` command line, also one a wrapper starts (``container-run NAME docker
    run ...``): the first argument after run that is not an option."""
    start = next((i for i in range(len(command) - 1) if Path(command[i]).name == "docker" and command[i + 1] == "run"),
                 None)  # fmt: skip
    if start is None:
        return None
    args = iter(command[start + 2:])
    for arg in args:
        if arg in _DOCKER_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _host_path(rel: str, host: str) -> str:
    """``hosts/<host>/etc/x`` (a path in the render directory) -> ``/etc/x`` on the host."""
    prefix = f"hosts/{host}/"
    if not rel.startswith(prefix):
        raise InputError(f"manifest.json names {rel} for host {host}; render again with this xpdctl")
    return "/" + rel[len(prefix) :]


def services(manifest_host: dict[str, Any], host: str, address: str) -> list[dict[str, Any]]:
    """The host's services as preflight checks them (their units and ports are not taken by something
    else); xpdctl installs and starts them itself after the playbooks (xpdctl.remote.applier)."""
    return [
        {"name": s["name"], "role": s["role"], "unit": _host_path(s["unit"], host), "port": s.get("port"),
         "host": address}
        for s in manifest_host.get("services", [])
    ]


def _ssh_vars(inv: Inventory, host: Host, known_hosts: Path) -> dict[str, Any]:
    ssh = host.ssh or inv.defaults.ssh
    found = {
        "ansible_host": host.address,
        "ansible_user": ssh.user,
        "ansible_port": ssh.port,
        # Trust a host's key the first time, refuse it if it changes later; per cluster, so test
        # fleets re-created at the same addresses do not trip over the operator's known_hosts.
        "ansible_ssh_common_args": f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts}",
    }
    if ssh.key:
        found["ansible_ssh_private_key_file"] = os.path.expanduser(ssh.key)
    return found


def host_vars(
    inv: Inventory,
    host: Host,
    manifest: dict[str, Any],
    render_dir: Path,
    *,
    known_hosts: Path,
    model_source_dir: Path | None,
) -> dict[str, Any]:
    profile = vendor_profiles().get(host.vendor or "")
    # Hosts whose vendor has PCI GPUs get the vendor's driver roles; cpu "GPUs" need none.
    gpu_vendor = host.vendor if profile is not None and profile.pci_vendor_id else ""
    planned = manifest.get("hosts", {}).get(host.name, {})
    entries = planned.get("services", [])
    # A KV agent in an engine image copies xpdctl out of the xpdctl image before it starts (xpdctl/plan.py).
    images = list(dict.fromkeys(filter(None, [image for s in entries
                                              for image in (container_image(s.get("command", [])), s.get("xpdctl_image"))])))
    runs_model = any(s.get("vllm_args") is not None for s in entries)
    model: dict[str, Any] = {}
    if runs_model:
        model = {"name": inv.model.name, "revision": inv.model.revision, "path": manifest["model"]["path"]}
        if model_source_dir is not None:
            model["source_dir"] = str(model_source_dir)
    return {
        **_ssh_vars(inv, host, known_hosts),
        "xpd_gpu_vendor": gpu_vendor,
        # The catalog's name for it (an inventory may write an alias): what the roles look up.
        "xpd_gpu_model": (find_gpu(host.gpu.model) or host.gpu.model) if host.gpu else "",
        "xpd_gpu_count": host.gpu.count if host.gpu and gpu_vendor else 0,
        "xpd_nics": list(host.nics),
        "xpd_container_runtime": runtime_of(inv, host) == "container",
        "xpd_images": images,
        "xpd_model": model,
        "xpd_services": services(planned, host.name, host.address),
        # render's nftables rules for the host (firewall: in the inventory), else "" (no firewall role).
        "xpd_firewall_rules": str(rules) if (rules := render_dir / FIREWALL / f"{host.name}.nft").exists() else "",
        # render's keepalived config for a router host with router.vip, else "" (no keepalived role).
        "xpd_keepalived_config": str(vrrp) if (vrrp := render_dir / KEEPALIVED / f"{host.name}.conf").exists() else "",
    }


def ansible_inventory(
    inv: Inventory,
    render_dir: Path,
    *,
    known_hosts: Path,
    model_source_dir: Path | None = None,
) -> dict[str, Any]:
    """``{"all": {"hosts": {...}, "children": {...}}}``; groups by GPU vendor and service role for --limit."""
    manifest = read_manifest(render_dir)
    hosts = {
        host.name: host_vars(inv, host, manifest, render_dir, known_hosts=known_hosts, model_source_dir=model_source_dir)
        for host in inv.hosts
    }
    groups: dict[str, list[str]] = {}
    for name, values in hosts.items():
        labels = [values["xpd_gpu_vendor"]] + [s["role"] for s in values["xpd_services"]]
        for label in filter(None, labels):
            groups.setdefault(label, [])
            if name not in groups[label]:
                groups[label].append(name)
    children = {
        group: {"hosts": {name: {} for name in members}} for group, members in sorted(groups.items()) if group not in hosts
    }
    return {"all": {"hosts": hosts, "children": children}}
