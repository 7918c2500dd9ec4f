"""PCI devices from sysfs: one line per device, ``address vendor device class``.

The observe script prints that line from ``/sys/bus/pci/devices/*/{vendor,device,class}``; lspci is
not used because it is not always installed, and a grep for "VGA|3D" misses the MI300X, which is a
processing accelerator (class 0x1200xx).
"""

from __future__ import annotations

from typing import Literal

from xpdctl.status_model import PciDevice

Kind = Literal["gpu", "nic"]

# Vendor ID -> (name, {class prefix (base class + subclass): kind}). Classes not listed are "other"
# (NVSwitch bridges, an AMD chipset's functions, a BMC's VGA).
VENDORS: dict[str, tuple[str, dict[str, Kind]]] = {
    "0x10de": ("nvidia", {"0x0300": "gpu", "0x0302": "gpu"}),
    "0x1002": ("amd", {"0x0300": "gpu", "0x0302": "gpu", "0x0380": "gpu", "0x1200": "gpu"}),
    "0x15b3": ("mellanox", {"0x0200": "nic", "0x0207": "nic"}),
}


def parse_sysfs_listing(raw: str) -> list[PciDevice]:
    devices = []
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[1].startswith("0x"):
            continue
        address, vendor_id, device_id, class_code = (part.lower() for part in parts)
        name, kinds = VENDORS.get(vendor_id, (None, {}))
        devices.append(
            PciDevice(
                address=address,
                vendor_id=vendor_id,
                device_id=device_id,
                class_code=class_code,
                vendor=name,
                kind=kinds.get(class_code[:6], "other"),
            )
        )
    return devices
