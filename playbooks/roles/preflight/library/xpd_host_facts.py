#!/usr/bin/python
"""Raw host facts for xpdctl's preflight: read-only, no judgement (xpdctl evaluates them)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: xpd_host_facts
short_description: Read the host facts xpdctl's preflight checks
description:
  - Reads /etc/os-release, the running kernel and whether its headers are installed or installable,
    PCI devices from sysfs (vendor, device, class), RDMA port and network interface states, free disk
    space, Secure Boot state, listening TCP ports and the state of systemd units. Changes no configuration.
options:
  sysfs_root: {description: Root of the sysfs tree to read (simulated hardware lives elsewhere)., type: path, default: /sys}
  nics: {description: RDMA devices or interfaces to look for (a ":port" suffix is ignored)., type: list, elements: str, default: []}
  paths: {description: Paths whose filesystem's free space to report (the nearest existing parent is measured)., type: list, elements: path, default: []}
  units: {description: systemd units whose active state to report., type: list, elements: str, default: []}
  headers_package: {description: apt package of the running kernel's headers., type: str, default: ""}
author: xpdctl
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

# The EFI global variable GUID; the variable's 5th byte (after 4 attribute bytes) is 1 when enabled.
_SECURE_BOOT_VAR = "firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
_TCP_LISTEN = "0A"


def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def pci_listing(sysfs_root):
    """One line per device, ``address vendor device class``: the format xpdctl's PCI parser reads."""
    base = os.path.join(sysfs_root, "bus/pci/devices")
    lines = []
    for address in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        fields = [_read(os.path.join(base, address, name), "") for name in ("vendor", "device", "class")]
        lines.append(" ".join([address] + fields))
    return "\n".join(lines)


def nic_states(sysfs_root, names):
    states = {}
    for raw in names:
        name = raw.split(":")[0]
        rdma = os.path.join(sysfs_root, "class/infiniband", name, "ports")
        net = os.path.join(sysfs_root, "class/net", name)
        if os.path.isdir(rdma):
            ports = {port: _read(os.path.join(rdma, port, "state"), "") for port in sorted(os.listdir(rdma))}
            states[name] = {"kind": "rdma", "ports": ports}
        elif os.path.isdir(net):
            states[name] = {"kind": "net", "ports": {"1": _read(os.path.join(net, "operstate"), "")}}
        else:
            states[name] = {"kind": "missing", "ports": {}}
    return states


def disk_space(paths):
    result = []
    for path in paths:
        probe = path
        while not os.path.exists(probe):
            probe = os.path.dirname(probe) or "/"
        stat = os.statvfs(probe)
        result.append(
            {"path": path, "measured": probe, "device": os.stat(probe).st_dev, "free_bytes": stat.f_bavail * stat.f_frsize}
        )
    return result


def secure_boot(sysfs_root):
    if not os.path.isdir(os.path.join(sysfs_root, "firmware/efi")):
        return "no-uefi"
    try:
        with open(os.path.join(sysfs_root, _SECURE_BOOT_VAR), "rb") as handle:
            data = handle.read()
    except OSError:
        return "unknown"
    if len(data) < 5:
        return "unknown"
    return "enabled" if data[4] == 1 else "disabled"


def listening_ports(proc_net="/proc/net"):
    ports = set()
    for name in ("tcp", "tcp6"):
        text = _read(os.path.join(proc_net, name), "")
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def headers(module, kernel, package):
    installed = os.path.isdir("/lib/modules/%s/build" % kernel) or os.path.isdir("/usr/src/linux-headers-%s" % kernel)
    candidate = None
    refreshed = False
    if package and not installed:
        # Whether apt can install the headers depends on fresh package lists (a fresh host's may be
        # stale or empty). Refreshing them changes no configuration; --check leaves them alone.
        if not module.check_mode:
            refreshed = module.run_command(["apt-get", "update", "-qq"])[0] == 0
        rc, out, _ = module.run_command(["apt-cache", "policy", package])
        match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE) if rc == 0 else None
        if match and match.group(1) != "(none)":
            candidate = match.group(1)
    return {"installed": installed, "package": package, "candidate": candidate, "lists_refreshed": refreshed}


def unit_states(module, units):
    states = {}
    for unit in units:
        rc, out, _ = module.run_command(["systemctl", "is-active", unit])
        states[unit] = out.strip() or ("active" if rc == 0 else "unknown")
    return states


def main():
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "nics": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "path", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "headers_package": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    kernel = os.uname().release
    module.exit_json(
        changed=False,
        facts={
            "os_release": _read("/etc/os-release", ""),
            "kernel": kernel,
            "headers": headers(module, kernel, params["headers_package"]),
            "pci": pci_listing(params["sysfs_root"]),
            "nics": nic_states(params["sysfs_root"], params["nics"]),
            "disk": disk_space(params["paths"]),
            "secure_boot": secure_boot(params["sysfs_root"]),
            "listening": listening_ports(),
            "units": unit_states(module, params["units"]),
        },
    )


if __name__ == "__main__":
    main()
