"""An xpdctl inventory for a fleet of test hosts (the shape of :mod:`xpdctl.inventory.schema`).

NVIDIA hosts go to the prefill pool and AMD hosts to decode (the project's H100-prefill, MI300X-decode
layout); with one vendor only, the GPU hosts are split between the pools. The router runs on the first
host without GPUs, else on the first host. Engines run ``runtime: native`` with the simulator engine
and the interpreter running this xpdctl, which every host sees at the same path (a read-only share).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from xpdctl.testhosts.hardware import resolve_model
from xpdctl.testhosts.models import FleetRecord

POOL_OF_VENDOR = {"nvidia": "prefill", "amd": "decode"}
HEADER = """\
# Test hosts of fleet {fleet}, written by `xpdctl testhosts create` (remove them with
# `xpdctl testhosts destroy --fleet {fleet}`). Hardware is simulated: see xpdctl/testhosts.
# SSH host keys of these hosts: {known_hosts}
"""


def _pools(record: FleetRecord) -> dict[str, list[str]]:
    gpu_hosts = [h for h in record.hosts if h.gpu is not None]
    pools: dict[str, list[str]] = {"prefill": [], "decode": []}
    for host in gpu_hosts:
        pools[POOL_OF_VENDOR.get(host.gpu.vendor, "prefill")].append(host.name)
    if not pools["prefill"] or not pools["decode"]:
        names = [h.name for h in gpu_hosts]
        half = max(1, len(names) // 2)
        pools = {"prefill": names[:half], "decode": names[half:] or names[:1]}
    return pools


def build(record: FleetRecord, key: Path, declare_nics: bool = True) -> dict:
    """The inventory; ``declare_nics`` lists the simulated RDMA NICs under each host's ``nics``.

    Declared NICs are what preflight and status check (presence, port state). But engines then get
    UCX_NET_DEVICES naming them, and a simulated NIC carries no traffic: NIXL's UCX backend fails
    (NIXL_ERR_BACKEND) and no KV moves. For serving end to end, leave them out; UCX then moves KV
    over the hosts' virtual Ethernet.
    """
    hosts = []
    for host in record.hosts:
        entry: dict = {"name": host.name, "address": host.address}
        if host.gpu is not None:
            entry["vendor"] = host.gpu.vendor
            entry["gpu"] = {"model": resolve_model(host.gpu), "count": host.gpu.count}
        if host.nics and declare_nics:
            entry["nics"] = list(host.nics)
        hosts.append(entry)
    plain = [h.name for h in record.hosts if h.gpu is None]
    pools = _pools(record)
    return {
        "cluster": record.name,
        "model": {"name": "tiny-gpt-oss", "builder": "tiny-gpt-oss"},
        "engine": {"vllm_version": "0.32.0", "runtime": "native", "server": "sim", "python": sys.executable},
        "defaults": {"ssh": {"user": "root", "key": str(key)}},
        "hosts": hosts,
        # One instance per host: a test machine runs every host's engines on two cores.
        "pools": {role: {"hosts": names, "instances_per_host": 1} for role, names in pools.items()},
        "router": {"hosts": [(plain or [record.hosts[0].name])[0]], "auth": {"mode": "open"}},
    }


def write(record: FleetRecord, key: Path, known_hosts: Path, path: Path, declare_nics: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER.format(fleet=record.name, known_hosts=known_hosts)
    path.write_text(text + yaml.safe_dump(build(record, key, declare_nics), sort_keys=False))
