"""Rules that relate several inventory fields. Each returns every problem it finds, never the first only.

KV-compatibility rules live in :mod:`xpdctl.inventory.kvcompat`; these are about the cluster's shape.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections import Counter

from xpdctl.gpu_catalog import catalog_path, catalog_vendors, find_gpu, gpu_catalog, models_of
from xpdctl.releases import TABLE, Accepted, UnknownRelease, public_release, release
from xpdctl.inventory.problems import Problem
from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.topology import (
    ROLES,
    hosts_by_name,
    in_both_pools,
    instances_on,
    place,
    pool,
    runtime_of,
)
from xpdctl.vendors import vendor_profiles


def _host_index(inv: Inventory) -> dict[str, int]:
    result: dict[str, int] = {}
    for i, host in enumerate(inv.hosts):
        result.setdefault(host.name, i)
    return result


def unique_hosts(inv: Inventory) -> list[Problem]:
    problems = []
    for field in ("name", "address"):
        seen: dict[str, int] = {}
        for i, host in enumerate(inv.hosts):
            value = getattr(host, field)
            if value in seen:
                problems.append(
                    Problem(
                        ("hosts", i, field),
                        f"{field} {value!r} is already used by hosts[{seen[value]}]; "
                        f"give each host its own {field}",
                    )
                )
            else:
                seen[value] = i
    return problems


def pools_name_known_hosts(inv: Inventory) -> list[Problem]:
    known = hosts_by_name(inv)
    problems = []
    for role in ROLES:
        counts = Counter(pool(inv, role).hosts)
        for j, name in enumerate(pool(inv, role).hosts):
            loc = ("pools", role, "hosts", j)
            if name not in known:
                problems.append(
                    Problem(loc, f"no host named {name!r}; declare it under hosts or fix the name")
                )
            elif counts[name] > 1 and pool(inv, role).hosts.index(name) != j:
                problems.append(
                    Problem(loc, f"{name!r} is listed twice; use instances_per_host for more instances")
                )
    for j, name in enumerate(inv.router.hosts):
        if name not in known:
            problems.append(Problem(("router", "hosts", j), f"no host named {name!r}; declare it under hosts"))
        elif inv.router.hosts.index(name) != j:
            problems.append(Problem(("router", "hosts", j), f"{name!r} is listed twice; list each router host once"))
    if len(inv.router.hosts) > 1 and inv.router.vip is None:
        problems.append(Problem(
            ("router", "hosts"),
            "two or more routers need one address for clients: add router.vip {address, network, interface} "
            "(keepalived moves it between them), or list one host",
        ))
    return problems


def engine_hosts_have_gpus(inv: Inventory) -> list[Problem]:
    index = _host_index(inv)
    vendors = vendor_profiles()
    problems = []
    pooled = {name for role in ROLES for name in pool(inv, role).hosts}
    for name in sorted(pooled & set(index), key=index.get):
        i = index[name]
        host = inv.hosts[i]
        if host.vendor is None:
            problems.append(
                Problem(
                    ("hosts", i),
                    f"host {name!r} is in a pool but has no vendor; add vendor: "
                    f"{' | '.join(sorted(vendors))}",
                )
            )
        elif host.vendor not in vendors:
            problems.append(
                Problem(
                    ("hosts", i, "vendor"),
                    f"unknown vendor {host.vendor!r}; use one of {', '.join(sorted(vendors))}",
                )
            )
        if host.gpu is None:
            problems.append(
                Problem(
                    ("hosts", i),
                    f"host {name!r} is in a pool but has no gpu; add gpu: {{model: ..., count: N}}",
                )
            )
        elif host.vendor in catalog_vendors():
            problems += _gpu_model_known(i, host.vendor, host.gpu.model)
    return problems


def _gpu_model_known(i: int, vendor: str, model: str) -> list[Problem]:
    """An engine host's GPU model must be in the GPU catalog (what preflight, the driver roles and advise read)."""
    found = find_gpu(model)
    known = models_of(vendor)
    where = f"; add it to {catalog_path()} if it is new"
    if found is None:
        return [Problem(("hosts", i, "gpu", "model"),
                        f"unknown {vendor} GPU model {model!r}; use one of {', '.join(known)}{where}")]
    if gpu_catalog()[found]["vendor"] != vendor:
        return [Problem(("hosts", i, "gpu", "model"),
                        f"GPU model {model!r} is not a {vendor} GPU; use one of {', '.join(known)} or fix vendor")]
    return []


def gpus_suffice(inv: Inventory) -> list[Problem]:
    index = _host_index(inv)
    problems = []
    pooled = dict.fromkeys(name for role in ROLES for name in pool(inv, role).hosts)
    for name in pooled:
        if name not in index or inv.hosts[index[name]].gpu is None:
            continue
        i = index[name]
        host = inv.hosts[i]
        count = host.gpu.count
        used = 0
        for role in ROLES:
            p = pool(inv, role)
            if name not in p.hosts:
                continue
            if count % p.tensor_parallel:
                problems.append(
                    Problem(
                        ("pools", role, "tensor_parallel"),
                        f"TP {p.tensor_parallel} does not divide the {count} GPUs of {name}; "
                        f"use a divisor of {count} or fix gpu.count",
                    )
                )
            n = instances_on(inv, role, host)
            if n == 0:
                shared = " (it is in both pools, so each gets half)" if in_both_pools(inv, name) else ""
                problems.append(
                    Problem(
                        ("hosts", i, "gpu", "count"),
                        f"{name!r} has {count} GPUs{shared}, too few for one {role} instance of "
                        f"TP {p.tensor_parallel}; add GPUs, lower TP or set instances_per_host",
                    )
                )
            used += n * p.tensor_parallel
        if used > count:
            problems.append(
                Problem(
                    ("hosts", i, "gpu", "count"),
                    f"{name!r} has {count} GPUs but its instances need {used}; "
                    "lower instances_per_host or TP, or take the host out of one pool",
                )
            )
    return problems


def runtimes_have_what_they_run(inv: Inventory) -> list[Problem]:
    hosts = hosts_by_name(inv)
    vendors = vendor_profiles()
    problems = []
    placements = place(inv)
    engine_hosts = list(dict.fromkeys(p.host for p in placements))
    missing_images: dict[str, str] = {}
    # Ordered sets: the router host may also run engines.
    needs_python: dict[str, None] = {}
    needs_xpdctl_image: dict[str, None] = {}
    for name in engine_hosts:
        host = hosts[name]
        if runtime_of(inv, host) == "native":
            needs_python[name] = None
            continue
        needs_xpdctl_image[name] = None  # the KV agent, and the simulator when server is sim
        if inv.engine.server == "vllm" and host.vendor in vendors and host.vendor not in inv.engine.images:
            missing_images.setdefault(host.vendor, name)
    for router_host in (hosts[n] for n in inv.router.hosts if n in hosts):
        if runtime_of(inv, router_host) == "native":
            needs_python[router_host.name] = None
        else:
            needs_xpdctl_image[router_host.name] = None
    for vendor, name in missing_images.items():
        problems.append(
            Problem(
                ("engine", "images"),
                f"no image for vendor {vendor!r} (host {name!r} runs containers); "
                f"add {vendor}: <registry/image@sha256:...>",
            )
        )
    if needs_python and not inv.engine.python:
        problems.append(
            Problem(
                ("engine", "python"),
                f"hosts {', '.join(needs_python)} run natively but engine.python is not set; "
                "set it to an interpreter with vllm and xpdctl (e.g. ../.venv/bin/python)",
            )
        )
    if needs_xpdctl_image and not inv.engine.xpdctl_image:
        problems.append(
            Problem(
                ("engine",),
                f"hosts {', '.join(needs_xpdctl_image)} run the router, KV agent or "
                "simulator in containers but engine.xpdctl_image is not set; add it (pinned by digest)",
            )
        )
    return problems


def images_known_and_pinned(inv: Inventory) -> list[Problem]:
    vendors = vendor_profiles()
    problems = []
    images = [(("engine", "images", vendor), image) for vendor, image in inv.engine.images.items()]
    if inv.engine.xpdctl_image:
        images.append((("engine", "xpdctl_image"), inv.engine.xpdctl_image))
    for loc, image in images:
        if loc[-2] == "images" and loc[-1] not in vendors:
            problems.append(Problem(loc, f"unknown vendor {loc[-1]!r}; use one of {', '.join(sorted(vendors))}"))
        elif "@sha256:" not in image:
            problems.append(
                Problem(
                    loc,
                    f"image {image!r} is not pinned by digest; use {image.split(':')[0]}@sha256:<digest> "
                    "so every host runs the same bytes",
                )
            )
    return problems


def ports_unique_per_host(inv: Inventory) -> list[Problem]:
    hosts = hosts_by_name(inv)
    taken: dict[tuple[str, int], tuple[str, tuple, bool]] = {}
    problems = []

    def claim(host: str, port: int, what: str, loc: tuple, explicit: bool) -> None:
        if port > 65535:  # a base port plus the instance number ran past the end
            problems.append(Problem(loc, f"{what} on {host} would get port {port}, beyond 65535; lower it"))
            return
        key = (host, port)
        if key not in taken:
            taken[key] = (what, loc, explicit)
            return
        other, other_loc, other_explicit = taken[key]
        # Point at a port someone wrote down: a default is not what the person will want to edit.
        where = loc if explicit or not other_explicit else other_loc
        problems.append(Problem(where, f"port {port} on {host} is used by both {other} and {what}; change one"))

    placements = place(inv)
    for p in placements:
        explicit = "port" in pool(inv, p.role).model_fields_set
        claim(p.host, p.port, f"{p.role} instance {p.index}", ("pools", p.role, "port"), explicit)
    for p in placements:
        explicit = "side_channel_port" in inv.kv.model_fields_set
        what = f"the NIXL side channel of {p.role} instance {p.index}"
        claim(p.host, p.side_channel_port, what, ("kv", "side_channel_port"), explicit)
    for p in placements:
        if pool(inv, p.role).prefix_caching:
            explicit = "events_port" in inv.kv.model_fields_set
            claim(p.host, p.events_port, f"the KV event publisher of {p.role} instance {p.index}",
                  ("kv", "events_port"), explicit)
    for name in dict.fromkeys(p.host for p in placements):
        explicit = "agent_port" in inv.kv.model_fields_set
        claim(name, inv.kv.agent_port, "the KV agent", ("kv", "agent_port"), explicit)
    for name in dict.fromkeys(n for n in inv.router.hosts if n in hosts):
        claim(name, inv.router.port, "the router", ("router", "port"), "port" in inv.router.model_fields_set)
    return problems


# vLLM flags the plan sets from inventory fields: in extra_args they would silently override a checked
# decision (an fp8 KV cache across vendors, say), so they are refused with the field to use instead.
MANAGED_FLAGS = {
    "--model": "set model.path instead",
    "--served-model-name": "set model.name instead",
    "--host": "set hosts[].address instead",
    "--port": "set pools.<role>.port instead",
    "--tensor-parallel-size": "set pools.<role>.tensor_parallel instead",
    "-tp": "set pools.<role>.tensor_parallel instead",
    "--dtype": "set model.dtype instead",
    "--quantization": "set model.quantization instead",
    "-q": "set model.quantization instead",
    "--max-model-len": "set model.max_model_len instead",
    "--kv-cache-dtype": "set model.kv_cache_dtype instead",
    "--block-size": "set pools.<role>.block_size instead",
    "--attention-backend": "set kv.attention_backend instead",
    "--disable-hybrid-kv-cache-manager": "set kv.hybrid_kv_cache_manager instead",
    "--enable-prefix-caching": "set pools.<role>.prefix_caching instead",
    "--kv-transfer-config": "set kv.buffer and the pools instead",
    "--kv-events-config": "set pools.<role>.prefix_caching (and kv.events_port) instead",
    "--prefix-caching-hash-algo": "remove it: the router computes sha256_cbor block hashes, what xpdctl renders",
}


def extra_args_leave_managed_flags_alone(inv: Inventory) -> list[Problem]:
    lists = [(("engine", "extra_args"), inv.engine.extra_args)]
    lists += [(("pools", role, "extra_args"), pool(inv, role).extra_args) for role in ROLES]
    problems = []
    for loc, args in lists:
        for j, arg in enumerate(args):
            flag = arg.split("=", 1)[0].replace("_", "-")  # vLLM accepts --kv_cache_dtype too
            flag = "--" + flag[len("--no-"):] if flag.startswith("--no-") else flag
            if flag in MANAGED_FLAGS:
                problems.append(
                    Problem(loc + (j,), f"{arg} is set by xpdctl; {MANAGED_FLAGS[flag]}")
                )
    return problems


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a DNS name: its resolution is the host's business


def loopback_not_mixed_with_network(inv: Inventory) -> list[Problem]:
    """Engines publish their address as the NIXL side channel and the router dials it: a loopback
    address is reachable only from the same machine, so it cannot sit beside networked hosts.
    (All-loopback clusters, e.g. several simulated hosts on one machine, are consistent.)"""
    used = {p.host for p in place(inv)} | set(inv.router.hosts)
    hosts = [(i, h) for i, h in enumerate(inv.hosts) if h.name in used]
    networked = [h.name for _, h in hosts if not _is_loopback(h.address)]
    if not networked:
        return []
    return [
        Problem(
            ("hosts", i, "address"),
            f"{host.address} is a loopback address, unreachable from {', '.join(networked)}, whose engines "
            "or router must reach this host; use its network address",
        )
        for i, host in hosts
        if _is_loopback(host.address)
    ]


def router_auth_consistent(inv: Inventory) -> list[Problem]:
    auth = inv.router.auth
    if auth.mode == "keys" and not auth.keys_file:
        return [Problem(("router", "auth", "mode"), "mode keys needs keys_file, the 0600 file of client keys "
                                                    "(docs/router.md, Client keys); add it or set mode: open")]
    if auth.mode == "open" and auth.keys_file:
        return [Problem(("router", "auth", "keys_file"), "open mode reads no keys; remove keys_file or set mode: keys")]
    return []


def exposure_warnings(inv: Inventory) -> list[Problem]:
    """What is allowed but probably not meant: ``check`` prints these, nothing is refused."""
    if inv.router.auth.mode == "open" and not _is_loopback(inv.router.listen):
        return [Problem(("router", "auth", "mode"),
                        f"the router listens on {inv.router.listen}, beyond loopback, and serves anyone who reaches "
                        "it; set mode: keys with a keys_file, or listen: 127.0.0.1")]
    return []


def _releases(inv: Inventory) -> dict[str, tuple]:
    """The vLLM releases the engines run (public versions: a build's local suffix such as +rocm644 accepts
    what its release accepts), each with where the inventory sets it first."""
    pooled = {name for role in ROLES for name in pool(inv, role).hosts}
    found: dict[str, tuple] = {}
    engines = [(i, h) for i, h in enumerate(inv.hosts) if h.name in pooled]
    if not engines or any(h.vllm_version is None for _, h in engines):
        found[public_release(inv.engine.vllm_version)] = ("engine", "vllm_version")
    for i, host in engines:
        if host.vllm_version is not None:
            found.setdefault(public_release(host.vllm_version), ("hosts", i, "vllm_version"))
    return found


def _not_accepted(value: str, accepted: Accepted, what: str, release: str) -> str:
    close = difflib.get_close_matches(value, accepted.values, n=1) or [
        v for v in accepted.values if v.lower() == value.lower()
    ]
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"{value!r} is not a {what} vLLM {release} accepts; {hint}use one of "
            f"{', '.join(accepted.values)} (read from {accepted.source})")  # fmt: skip


def values_vllm_accepts(inv: Inventory) -> list[Problem]:
    """Fields that reach vLLM's command line hold values the engines' vLLM release accepts. A release
    missing from the table is the KV rules' one error (xpdctl/inventory/kvcompat.py), not a second."""
    if inv.engine.server != "vllm":
        return []  # xpdctl's simulator takes them as labels; no vLLM parses them
    fields = (
        (("model", "quantization"), inv.model.quantization, "quantization", "quantization method"),
        (("model", "dtype"), inv.model.dtype, "dtype", "dtype"),
        (("model", "kv_cache_dtype"), inv.model.kv_cache_dtype, "kv_cache_dtype", "KV cache dtype"),
        (("kv", "attention_backend"), inv.kv.attention_backend, "attention_backend", "attention backend"),
    )
    problems = []
    for version, where in _releases(inv).items():
        try:
            values = release(version).accepts
        except UnknownRelease:
            continue
        if values is None:
            problems.append(Problem(where, (
                f"what vLLM {version} accepts is not in {TABLE.name} yet; add its `accepts:` block "
                f"(python -m xpdctl.releases.vllm_source <vllm package dir of {version}>; see docs/inventory.md)"
            )))  # fmt: skip
            continue
        for loc, value, key, what in fields:
            accepted: Accepted = getattr(values, key)
            if value is not None and value not in accepted.values:
                problems.append(Problem(loc, _not_accepted(value, accepted, what, version)))
    return problems


RULES = (
    unique_hosts,
    pools_name_known_hosts,
    engine_hosts_have_gpus,
    gpus_suffice,
    runtimes_have_what_they_run,
    images_known_and_pinned,
    ports_unique_per_host,
    loopback_not_mixed_with_network,
    extra_args_leave_managed_flags_alone,
    router_auth_consistent,
    values_vllm_accepts,
)


def check_rules(inv: Inventory) -> list[Problem]:
    problems: list[Problem] = []
    for rule in RULES:
        problems.extend(rule(inv))
    # A rule checked per host can find the same field wrong several times: say it once.
    return list(dict.fromkeys(problems))
