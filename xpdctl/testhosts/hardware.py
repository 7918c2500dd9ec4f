"""Declared GPUs and NICs -> what a test host's hardware looks like from inside.

``hardware.json`` (read by the stand-in tools: nvidia-smi, amd-smi, ibv_devinfo, ...) and a fake sysfs
tree (``bus/pci/devices``, ``class/infiniband`` and the firmware's ``firmware/efi/efivars``) that the
host sees under ``/sys``. Both live in the
host's hardware folder outside its overlay, so a test can change the hardware of a running host
(fewer GPUs than the inventory says, a NIC port down) by rewriting them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import InputError
from xpdctl.gpu_catalog import gpu_catalog, models_of
from xpdctl.testhosts.models import GpuDecl
from xpdctl.vendors import vendor_profiles

_CATALOG = Path(__file__).with_name("hardware.yaml")


class _Hw(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuHw(_Hw):
    index: int
    vendor: str
    model: str
    product_name: str
    architecture: str
    bus_id: str  # 0000:18:00.0
    pci_vendor: str
    pci_device: str
    pci_class: str
    uuid: str
    serial: str
    memory_mib: int
    power_limit_w: int


class NicHw(_Hw):
    name: str  # mlx5_0
    bus_id: str
    pci_vendor: str
    pci_device: str
    pci_class: str
    fw_ver: str
    vendor_part_id: int
    node_guid: str
    link_layer: str
    rate: str
    port_state: Literal["ACTIVE", "DOWN"] = "ACTIVE"


class Faults(_Hw):
    # Packages whose postinst fails on this host (the stand-in prints a realistic error and exits 1).
    fail_install: list[str] = []
    # nouveau binds the NVIDIA GPUs at boot unless a modprobe.d file blacklists it (a fresh Ubuntu
    # install): until a reboot after that, the nvidia module cannot take the GPUs.
    nouveau: bool = False
    # The firmware's Secure Boot state (UEFI setup, not the OS): every host boots through UEFI, with
    # Secure Boot off unless set. Shown as the real SecureBoot EFI variable in efivarfs.
    secure_boot: bool = False


class Hardware(_Hw):
    hostname: str
    gpus: list[GpuHw] = []
    nics: list[NicHw] = []
    faults: Faults = Faults()


@cache
def catalog() -> dict:
    return yaml.safe_load(_CATALOG.read_text())


def resolve_model(decl: GpuDecl) -> str:
    """The catalog model a declaration means (its own, or the vendor's default); errors name the choices."""
    data = catalog()
    if decl.vendor not in data["default_model"]:
        raise InputError(
            f"test hosts cannot simulate vendor {decl.vendor!r}; use one of {', '.join(data['default_model'])}"
        )
    model = decl.model or data["default_model"][decl.vendor]
    spec = gpu_catalog().get(model)
    if spec is None or spec["vendor"] != decl.vendor:
        choices = models_of(decl.vendor)
        raise InputError(f"no {decl.vendor} GPU model {model!r} to simulate; use one of {', '.join(choices)}")
    return model


def _bus_id(buses: list[str], index: int) -> str:
    bus = int(buses[index], 16) if index < len(buses) else 0xE0 + index - len(buses)
    return f"0000:{bus:02x}:00.0"


def build(hostname: str, seed: str, gpu: GpuDecl | None, gpu_count: int | None, nics: list[str]) -> Hardware:
    """The hardware of one host; ``gpu_count`` overrides the declared count (a mismatch to detect).

    IDs (UUIDs, serials, GUIDs) derive from ``seed`` so the same fleet always prints the same output.
    """
    data = catalog()
    gpus = []
    if gpu is not None:
        model = resolve_model(gpu)
        spec = gpu_catalog()[model]
        vendor_id = vendor_profiles()[gpu.vendor].pci_vendor_id
        for i in range(gpu.count if gpu_count is None else gpu_count):
            ident = uuid.uuid5(uuid.NAMESPACE_DNS, f"{seed}.gpu{i}")
            gpus.append(
                GpuHw(
                    index=i,
                    vendor=gpu.vendor,
                    model=model,
                    product_name=spec["product_name"],
                    architecture=spec["architecture"],
                    bus_id=_bus_id(data["gpu_buses"], i),
                    pci_vendor=f"0x{vendor_id}",
                    pci_device=spec["pci_devices"][0],
                    pci_class=spec["pci_class"],
                    uuid=f"GPU-{ident}",
                    serial=str(1650000000000 + ident.int % 10**9),
                    memory_mib=spec["memory_mib"],
                    power_limit_w=spec["power_limit_w"],
                )
            )
    nic = data["nic"]
    nic_list = []
    for i, name in enumerate(nics):
        guid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{seed}.{name}").hex[:16]
        nic_list.append(
            NicHw(
                name=name,
                bus_id=_bus_id(nic["buses"], i),
                pci_vendor=nic["pci_vendor"],
                pci_device=nic["pci_device"],
                pci_class=nic["pci_class"],
                fw_ver=nic["fw_ver"],
                vendor_part_id=nic["vendor_part_id"],
                node_guid=":".join(guid[j : j + 4] for j in range(0, 16, 4)),
                link_layer=nic["link_layer"],
                rate=nic["rate"],
            )
        )
    return Hardware(hostname=hostname, gpus=gpus, nics=nic_list)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


# efivarfs shows a variable as its 4-byte attribute word (little endian) followed by its data; SecureBoot
# (EFI global variable GUID, UEFI spec 2.10 section 3.3) is BOOTSERVICE_ACCESS | RUNTIME_ACCESS (0x6)
# and one byte, 1 when Secure Boot is on. The name is the one the preflight module reads
# (playbooks/roles/preflight/library/xpd_host_facts.py), as mokutil --sb-state does.
SECURE_BOOT_VAR = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _write_secure_boot(folder: Path, on: bool) -> None:
    # Written in place, never replaced: the host sees the folder through an overlay, which keeps the
    # file it first looked up.
    path = folder / SECURE_BOOT_VAR
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.write(bytes([0x06, 0, 0, 0, 1 if on else 0]))


def _clear(folder: Path) -> None:
    # Emptied in place, never replaced: the host has this very folder bind-mounted.
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def write(folder: Path, hw: Hardware) -> None:
    """Write hardware.json and the sysfs tree under ``folder`` (the host's /etc/xpd-testhost)."""
    tmp = folder / "hardware.json.tmp"
    _write(tmp, json.dumps(hw.model_dump(), indent=2))
    os.replace(tmp, folder / "hardware.json")
    pci = folder / "sys/bus/pci/devices"
    _clear(pci)
    devices = [(d["address"], d["vendor"], d["device"], d["class"]) for d in catalog()["platform_devices"]]
    devices += [(g.bus_id, g.pci_vendor, g.pci_device, g.pci_class) for g in hw.gpus]
    devices += [(n.bus_id, n.pci_vendor, n.pci_device, n.pci_class) for n in hw.nics]
    for address, vendor, device, klass in devices:
        for name, value in (("vendor", vendor), ("device", device), ("class", klass), ("numa_node", "0")):
            _write(pci / address / name, value)
    ib = folder / "sys/class/infiniband"
    _clear(ib)
    for nic in hw.nics:
        state = "4: ACTIVE" if nic.port_state == "ACTIVE" else "1: DOWN"
        port = ib / nic.name / "ports/1"
        for name, value in (("state", state), ("link_layer", nic.link_layer), ("rate", nic.rate), ("gids/0", "fe80:0000:0000:0000:0000:0000:0000:0000")):
            _write(port / name, value)
        _write(ib / nic.name / "fw_ver", nic.fw_ver)
        _write(ib / nic.name / "node_guid", nic.node_guid)
    _write_secure_boot(folder, hw.faults.secure_boot)


def read(folder: Path) -> Hardware:
    return Hardware.model_validate_json((folder / "hardware.json").read_text())
