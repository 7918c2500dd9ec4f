"""``xpd_preflight_report``: judge the facts ``xpd_host_facts`` read, on the controller.

Self-contained (the standard library and Ansible only), so the playbooks run with plain
``ansible-playbook`` on a controller without xpdctl. xpdctl reads the report it returns
(``xpdctl/provision/preflight_checks.py``: ``{"ok": bool, "checks": [{"name", "status", "detail"}]}``)
and unit-tests :func:`evaluate` by loading this file (tests/provision/test_preflight_checks.py).

``facts`` is what ``xpd_host_facts`` returns; ``expectations`` comes from the inventory and the plan
(the role's task "Evaluate the checks" lists its keys). Every check yields ``ok``, ``warn`` (works,
but look) or ``fail`` with a detail line that says what was found and what to do.
"""

from __future__ import annotations

from collections import defaultdict

_GIB = 1024**3


def _check(name, status, detail):
    return {"name": name, "status": status, "detail": detail}


def _os_id(os_release):
    """``<ID> <VERSION_ID>`` of an /etc/os-release text (values may be quoted)."""
    values = {}
    for line in os_release.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return f"{values.get('ID', '?')} {values.get('VERSION_ID', '?')}"


def _os(facts, expect):
    found = _os_id(facts.get("os_release", ""))
    if found in expect["os_allowed"]:
        return _check("os", "ok", found)
    return _check("os", "fail", f"{found} is not one of {', '.join(expect['os_allowed'])}; install a supported "
                                "release or add it to preflight_os_allowed once tested")


def _kernel_headers(facts, expect):
    kernel, headers = facts.get("kernel", ""), facts.get("headers", {})
    if not expect.get("gpu_vendor"):
        return _check("kernel_headers", "ok", f"{kernel} (no GPU driver to build)")
    if headers.get("installed"):
        return _check("kernel_headers", "ok", f"{kernel}: installed")
    if headers.get("candidate"):
        return _check("kernel_headers", "ok", f"{kernel}: {headers.get('package', '')} {headers['candidate']} "
                                              "will be installed")
    if not headers.get("lists_refreshed"):
        return _check("kernel_headers", "warn",
                      f"{kernel}: headers not installed and apt's package lists (not refreshed in --check) do not "
                      f"offer {headers.get('package', '')}; the driver's DKMS build fails unless a refresh finds them")
    return _check("kernel_headers", "fail",
                  f"no headers for the running kernel {kernel} and apt has no {headers.get('package') or 'package'}: "
                  "the driver's DKMS build would fail; boot a kernel whose headers the archive has, or add their source")


def _gpus_found(pci, vendor_ids, gpu_classes):
    """vendor -> PCI device IDs of the GPUs in a sysfs listing (``address vendor device class`` lines);
    a device is a GPU when its vendor is a GPU vendor and its class one the catalog's models show."""
    names = {vendor_id.lower(): vendor for vendor, vendor_id in vendor_ids.items()}
    found = defaultdict(list)
    for line in pci.splitlines():
        parts = line.lower().split()
        if len(parts) == 4 and parts[1] in names and parts[3][:6] in gpu_classes:
            found[names[parts[1]]].append(parts[2])
    return found


def _gpus(facts, expect):
    classes = {c.lower()[:6] for c in expect.get("gpu_classes", [])}
    by_vendor = _gpus_found(facts.get("pci", ""), expect.get("gpu_vendor_ids", {}), classes)
    found = ", ".join(f"{len(ids)} x {vendor} ({'/'.join(sorted(set(ids)))})" for vendor, ids in sorted(by_vendor.items()))
    found = found or "none"
    vendor, model, count = expect.get("gpu_vendor", ""), expect.get("gpu_model", ""), int(expect.get("gpu_count", 0))
    if not vendor:
        return _check("gpus", "ok", f"found {found}; none expected")
    mine = by_vendor.get(vendor, [])
    wanted = f"{count} x {vendor} {model}"
    if len(mine) != count:
        return _check("gpus", "fail", f"found {found} on the PCI bus, the inventory says {wanted}; fix the host's "
                                      "vendor or gpu.count in the inventory, or look for GPUs the firmware does not "
                                      "show (lspci, BIOS, reseat)")
    ids = {m.lower(): i for m, i in expect.get("gpu_models", {}).items()}.get(model.lower())
    if ids is None:
        return _check("gpus", "warn", f"found {found}; model {model} has no PCI IDs in preflight_gpu_models, "
                                      "so only vendor and count were checked")
    if sorted({device for device in mine if device not in ids}):
        return _check("gpus", "fail", f"found {found}, but {model} has PCI device IDs {'/'.join(ids)}; "
                                      "fix gpu.model in the inventory")
    return _check("gpus", "ok", f"found {found} = {wanted}")


def _port_up(kind, state):
    # RDMA ports read "4: ACTIVE" (INIT/ARMED mean no subnet manager or link yet); interfaces read "up".
    if kind == "rdma":
        return state.split(":")[-1].strip().upper() == "ACTIVE"
    return state.strip().lower() == "up"


def _nics(facts, expect):
    if not expect.get("nics"):
        return _check("nics", "ok", "none declared")
    problems, seen = [], []
    for raw in expect["nics"]:
        name = raw.split(":")[0]
        state = facts.get("nics", {}).get(name, {"kind": "missing"})
        if state["kind"] == "missing":
            problems.append(f"{name} missing")
            continue
        ports = state.get("ports", {})
        down = [f"{name} port {port} {value or 'unknown'}" for port, value in sorted(ports.items())
                if not _port_up(state["kind"], value)]
        if down or not ports:
            problems.extend(down or [f"{name} has no ports"])
        else:
            seen.append(f"{name} up")
    if problems:
        return _check("nics", "fail", f"{', '.join(problems)}; check cabling and the switch port (`ibv_devinfo`), "
                                      "or fix nics in the inventory")
    return _check("nics", "ok", ", ".join(seen))


def _disk(facts, expect):
    if not expect.get("disk"):
        return _check("disk", "ok", "nothing to store")
    space = {entry["path"]: entry for entry in facts.get("disk", [])}
    need_by_device, paths_by_device = defaultdict(float), defaultdict(list)
    for need in expect["disk"]:
        entry = space.get(need["path"])
        if entry is None:
            return _check("disk", "fail", f"free space of {need['path']} was not measured")
        need_by_device[entry["device"]] += float(need["gib"])
        paths_by_device[entry["device"]].append(need["path"])
    problems, summary = [], []
    for device, gib in need_by_device.items():
        entry = next(e for e in facts["disk"] if e["device"] == device)
        free = entry["free_bytes"] / _GIB
        paths = " + ".join(paths_by_device[device])
        summary.append(f"{paths}: {free:.0f} GiB free, {gib:.0f} needed")
        if free < gib:
            problems.append(f"{paths} need {gib:.0f} GiB, {entry['measured']} has {free:.0f} GiB free")
    if problems:
        return _check("disk", "fail", "; ".join(problems) + "; free space or mount a larger disk")
    return _check("disk", "ok", "; ".join(summary))


def _secure_boot(facts, expect):
    state = facts.get("secure_boot", "unknown")
    if state != "enabled":
        return _check("secure_boot", "ok", state)
    if expect.get("secure_boot_blocking"):
        return _check("secure_boot", "fail", "enabled: the kernel refuses the unsigned DKMS module; disable Secure "
                                             "Boot in the firmware or enroll the DKMS signing key (mokutil --import), "
                                             "then re-run")
    return _check("secure_boot", "warn", "enabled: only signed kernel modules load")


def _ports(facts, expect):
    listening = set(facts.get("listening", []))
    problems, ours = [], []
    needs = [n for n in expect.get("ports", []) if n.get("port") is not None]
    for need in needs:
        if need["port"] not in listening:
            continue
        if facts.get("units", {}).get(need["unit"].rsplit("/", 1)[-1]) == "active":
            ours.append(f"{need['port']} ({need['name']}, running)")
        else:
            problems.append(f"port {need['port']} for {need['name']} is taken by another process")
    if problems:
        return _check("ports", "fail", "; ".join(problems) + "; stop that process (`ss -ltnp`) or change the port "
                                                             "in the inventory")
    return _check("ports", "ok", f"{len(needs)} free" + (f", held by our services: {', '.join(ours)}" if ours else ""))


_CHECKS = (_os, _kernel_headers, _gpus, _nics, _disk, _secure_boot, _ports)


def evaluate(facts, expectations):
    checks = [check(facts, expectations) for check in _CHECKS]
    return {"ok": all(c["status"] != "fail" for c in checks), "checks": checks}


class FilterModule:
    def filters(self):
        return {"xpd_preflight_report": evaluate}
