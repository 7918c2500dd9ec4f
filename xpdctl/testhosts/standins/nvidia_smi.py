#!/usr/bin/python3
"""Stand-in nvidia-smi: the real output formats for the GPUs in /etc/xpd-testhost/hardware.json.

Formats follow a real capture (driver 580, H200; tests' shared fixtures). Supports the forms
xpdctl and its playbooks use: no arguments (the table), ``-L``, ``-q -x``, ``--query-gpu=... --format=csv``
and ``topo -m``. Like the real tool it fails when the driver is not loaded (exit 9) and when the
loaded kernel module's version differs from this package's (exit 18, "Driver/library version mismatch").
"""

import os
import string
import sys
import time

import xpd_standin

CUDA_BY_BRANCH = {"535": "12.2", "550": "12.4", "560": "12.6", "570": "12.8", "575": "12.9", "580": "13.0"}
XML_TEMPLATE = "/usr/share/xpd-testhost/nvidia-smi-gpu.xml"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
    "latest NVIDIA driver is installed and running."
)


def live(gpu):
    """Idle readings, deterministic per GPU so repeated calls print the same thing."""
    i = gpu["index"]
    reserved = 616 if gpu["memory_mib"] > 100000 else 534
    return {
        "temperature": 30 + i % 7,
        "power_draw": f"{70 + 3 * i:.2f}",
        "memory_used": 0,
        "memory_reserved": reserved,
        "memory_free": gpu["memory_mib"] - reserved,
        "utilization": 0,
        "sm_clock": 345,
    }


def bus_long(gpu):
    return "0000" + gpu["bus_id"].upper()


def query_value(field, gpu, driver, count, units):
    readings = live(gpu)

    def unit(value, suffix):
        return f"{value} {suffix}" if units else str(value)

    table = {
        "index": lambda: str(gpu["index"]),
        "name": lambda: gpu["product_name"],
        "uuid": lambda: gpu["uuid"],
        "serial": lambda: gpu["serial"],
        "pci.bus_id": lambda: bus_long(gpu),
        "driver_version": lambda: driver,
        "count": lambda: str(count),
        "persistence_mode": lambda: "Enabled",
        "memory.total": lambda: unit(gpu["memory_mib"], "MiB"),
        "memory.used": lambda: unit(readings["memory_used"], "MiB"),
        "memory.free": lambda: unit(readings["memory_free"], "MiB"),
        "utilization.gpu": lambda: unit(readings["utilization"], "%"),
        "temperature.gpu": lambda: str(readings["temperature"]),
        "power.draw": lambda: unit(readings["power_draw"], "W"),
        "power.limit": lambda: unit(f"{gpu['power_limit_w']:.2f}", "W"),
        "clocks.sm": lambda: unit(readings["sm_clock"], "MHz"),
        "ecc.errors.uncorrected.volatile.total": lambda: "0",
        "ecc.errors.corrected.volatile.total": lambda: "0",
        "compute_cap": lambda: "9.0",
    }
    if field not in table:
        xpd_standin.die(f'Field "{field}" is not a valid field to query.', 2)
    return table[field]()


HEADER_UNITS = {
    "memory.total": "MiB", "memory.used": "MiB", "memory.free": "MiB", "utilization.gpu": "%",
    "power.draw": "W", "power.limit": "W", "clocks.sm": "MHz",
}  # fmt: skip


def query(fields_arg, format_arg, gpus, driver):
    fields = [f.strip() for f in fields_arg.split(",") if f.strip()]
    options = format_arg.split(",")
    if "csv" not in options:
        xpd_standin.die(f'"{format_arg}" is not a valid format. Use csv.', 2)
    units = "nounits" not in options
    lines = []
    if "noheader" not in options:
        lines.append(", ".join(f"{f} [{HEADER_UNITS[f]}]" if units and f in HEADER_UNITS else f for f in fields))
    for gpu in gpus:
        lines.append(", ".join(query_value(f, gpu, driver, len(gpus), units) for f in fields))
    print("\n".join(lines))


def xml(gpus, driver, cuda):
    with open(XML_TEMPLATE) as handle:
        template = string.Template(handle.read())
    out = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
        "<nvidia_smi_log>",
        f"\t<timestamp>{time.strftime('%a %b %d %H:%M:%S %Y')}</timestamp>",
        f"\t<driver_version>{driver}</driver_version>",
        f"\t<cuda_version>{cuda}</cuda_version>",
        f"\t<attached_gpus>{len(gpus)}</attached_gpus>",
    ]
    for gpu in gpus:
        pci_class = gpu["pci_class"][2:]
        _, bus, devfn = gpu["bus_id"].split(":")
        values = dict(
            live(gpu),
            bus_id=bus_long(gpu),
            product_name=gpu["product_name"],
            architecture=gpu["architecture"],
            serial=gpu["serial"],
            uuid=gpu["uuid"],
            minor=gpu["index"],
            module_id=gpu["index"] + 1,
            driver_version=driver,
            pci_bus=bus.upper(),
            pci_device=devfn.split(".")[0].upper(),
            pci_base_class=int(pci_class[:2], 16),
            pci_sub_class=int(pci_class[2:4], 16),
            pci_device_id=gpu["pci_device"][2:].upper() + gpu["pci_vendor"][2:].upper(),
            memory_total=gpu["memory_mib"],
            power_limit=gpu["power_limit_w"],
        )
        out.append(template.substitute(values).rstrip("\n"))
    out.append("</nvidia_smi_log>")
    print("\n".join(out))


def table(gpus, driver, cuda):
    rule = "+-----------------------------------------+------------------------+----------------------+"
    lines = [
        time.strftime("%a %b %d %H:%M:%S %Y") + "       ",
        "+" + "-" * 89 + "+",
        f"| NVIDIA-SMI {driver:<23}Driver Version: {driver:<15}CUDA Version: {cuda:<9}|",
        rule,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|=========================================+========================+======================|",
    ]
    for gpu in gpus:
        r = live(gpu)
        left = f" N/A   {r['temperature']}C    P0"
        power = f"{float(r['power_draw']):.0f}W / {gpu['power_limit_w']:>4}W "
        lines += [
            f"|{gpu['index']:>4}  {gpu['product_name'][:31]:<31}On  |   {bus_long(gpu)} Off |{'0':>21} |",
            f"|{left}{power:>{41 - len(left)}}|{r['memory_used']:>8}MiB / {gpu['memory_mib']:>6}MiB |"
            f"{r['utilization']:>7}%      Default |",
            f"|{'':41}|{'':24}|{'Disabled':>21} |",
            rule,
        ]
    lines += [
        "",
        "+" + "-" * 89 + "+",
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
        "|  No running processes found" + " " * 61 + "|",
        "+" + "-" * 89 + "+",
    ]
    print("\n".join(lines))


def topo(gpus):
    names = [f"GPU{g['index']}" for g in gpus]
    print("\t" + "\t".join(names) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID")
    for gpu in gpus:
        cells = [" X " if other is gpu else "NV18" for other in gpus]
        print(f"{names[gpu['index']]}\t" + "\t".join(cells) + f"\t0-{os.cpu_count() - 1}\t0\t\tN/A")


def main(argv):
    gpus = xpd_standin.gpus("nvidia")
    own = xpd_standin.package("nvidia-utils-*")
    loaded = xpd_standin.loaded_module("nvidia")
    if not gpus or own is None or loaded is None:
        xpd_standin.die(NO_DRIVER, 9)
    driver = own["upstream"]
    if loaded != driver:
        xpd_standin.die(
            f"Failed to initialize NVML: Driver/library version mismatch\nNVML library version: {driver}", 18
        )
    cuda = CUDA_BY_BRANCH.get(driver.split(".")[0], "12.8")
    options = dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in argv)
    if not argv:
        table(gpus, driver, cuda)
    elif argv[0] == "topo":
        topo(gpus)
    elif "-L" in options or "--list-gpus" in options:
        for gpu in gpus:
            print(f"GPU {gpu['index']}: {gpu['product_name']} (UUID: {gpu['uuid']})")
    elif ("-q" in options or "--query" in options) and ("-x" in options or "--xml-format" in options):
        xml(gpus, driver, cuda)
    elif "--query-gpu" in options:
        query(options["--query-gpu"], options.get("--format", "csv"), gpus, driver)
    elif "--version" in options:
        print(f"NVIDIA-SMI version  : {driver}\nNVML version        : {driver.rsplit('.', 1)[0]}")
        print(f"DRIVER version      : {driver}\nCUDA Version        : {cuda}")
    else:
        xpd_standin.die(f"stand-in nvidia-smi does not simulate {' '.join(argv)!r}", 2)


if __name__ == "__main__":
    main(sys.argv[1:])
