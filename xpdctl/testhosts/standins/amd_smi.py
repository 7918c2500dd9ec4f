#!/usr/bin/python3
"""Stand-in amd-smi: ``static``, ``metric``, ``list`` and ``version``, as JSON (``--json``) or text.

The JSON layout is ROCm 6.x amd-smi's (a list of per-GPU objects), as in xpdctl's hand-written MI300X
fixtures; values come from /etc/xpd-testhost/hardware.json. Fails like the real tool when the amdgpu
module is not loaded.
"""

import json
import sys

import xpd_standin

NOT_LOADED = (
    "ERROR:root:Unable to detect any GPU devices, check amdgpu version and module status (sudo modprobe amdgpu)"
)


def measure(value, unit):
    return {"value": value, "unit": unit}


def static(gpu, driver):
    return {
        "gpu": gpu["index"],
        "asic": {
            "market_name": gpu["product_name"],
            "vendor_id": gpu["pci_vendor"],
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "device_id": gpu["pci_device"],
            "asic_serial": "0x" + gpu["serial"].rjust(16, "0"),
            "oam_id": gpu["index"],
            "num_compute_units": 304,
            "target_graphics_version": gpu["architecture"],
        },
        "bus": {"bdf": gpu["bus_id"], "max_pcie_width": 16, "max_pcie_speed": measure(32, "GT/s")},
        "limit": {"max_power": measure(gpu["power_limit_w"], "W"), "socket_power": measure(gpu["power_limit_w"], "W")},
        "driver": {"name": "amdgpu", "version": driver},
        "board": {"product_name": gpu["product_name"] + " OAM", "manufacturer_name": "AMD"},
        "partition": {"compute_partition": "SPX", "memory_partition": "NPS1"},
        "numa": {"node": 0, "affinity": 0},
        "vram": {"type": "HBM3", "size": measure(gpu["memory_mib"], "MB"), "bit_width": 8192},
    }


def metric(gpu):
    return {
        "gpu": gpu["index"],
        "usage": {"gfx_activity": measure(0, "%"), "umc_activity": measure(0, "%"), "mm_activity": "N/A"},
        "power": {"socket_power": measure(120 + 3 * gpu["index"], "W"), "power_management": "ENABLED"},
        "temperature": {"edge": "N/A", "hotspot": measure(40 + gpu["index"] % 5, "C"), "mem": measure(35, "C")},
        "ecc": {"total_correctable_count": 0, "total_uncorrectable_count": 0},
        "mem_usage": {
            "total_vram": measure(gpu["memory_mib"], "MB"),
            "used_vram": measure(0, "MB"),
            "free_vram": measure(gpu["memory_mib"], "MB"),
        },
    }


def text(value, indent=0):
    """amd-smi's text layout: the JSON keys upper-cased, nested by indentation."""
    pad = " " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, dict) and set(item) == {"value", "unit"}:
            lines.append(f"{pad}{key.upper()}: {item['value']} {item['unit']}")
        elif isinstance(item, dict):
            lines.append(f"{pad}{key.upper()}:")
            lines += text(item, indent + 4)
        else:
            lines.append(f"{pad}{key.upper()}: {item}")
    return lines


def main(argv):
    command = argv[0] if argv else "list"
    rocm = xpd_standin.package("rocm-core") or {"upstream": "unknown"}
    if command == "version":
        lib = xpd_standin.package("amd-smi-lib")
        print(f"AMDSMI Tool: {lib['upstream']} | AMDSMI Library version: {lib['upstream']} | ROCm version: "
              f"{rocm['upstream']} | amdgpu version: {xpd_standin.loaded_module('amdgpu') or 'N/A'}")
        return
    driver = xpd_standin.loaded_module("amdgpu")
    gpus = xpd_standin.gpus("amd")
    if driver is None or not gpus:
        xpd_standin.die(NOT_LOADED, 1)
    builders = {
        "static": lambda gpu: static(gpu, driver),
        "metric": metric,
        "list": lambda gpu: {"gpu": gpu["index"], "bdf": gpu["bus_id"], "uuid": gpu["uuid"]},
    }
    if command not in builders:
        xpd_standin.die(f"stand-in amd-smi does not simulate {command!r}; use static, metric, list or version", 2)
    data = [builders[command](gpu) for gpu in gpus]
    if "--json" in argv:
        print(json.dumps(data, indent=4))
    else:
        for entry in data:
            print(f"GPU: {entry.pop('gpu')}")
            print("\n".join(text(entry, 4)))
            print()


if __name__ == "__main__":
    main(sys.argv[1:])
