"""The inventory file's schema: the single source of truth for a cluster.

Only shape and per-field ranges live here; rules that relate several fields (pools naming hosts,
GPU counts, ports, KV compatibility) live in :mod:`xpdctl.inventory.rules` and :mod:`xpdctl.inventory.kvcompat`
so each can report every problem at once with the file line of the field to change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xpdctl.disagg_defaults import MIN_PROMPT_TOKENS


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid")


class Model(_Strict):
    name: str = Field(min_length=1)  # what clients send; also the served model name
    revision: str | None = None  # hub commit the weights come from (recorded, part of the KV generation)
    quantization: str | None = None  # e.g. mxfp4; omitted = vLLM reads it from the model config
    dtype: str = "bfloat16"
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = Field(None, ge=1)
    # Where the weights live on every engine host. vLLM's KV handshake compares this string, so it is
    # one path for the whole cluster. Default: /var/lib/xpdctl/models/<name>.
    path: str | None = None
    # Built locally on first use by `up` instead of downloaded (hosts without hub access).
    builder: Literal["tiny-gpt-oss"] | None = None
    # Alternating sliding-window/full attention (GPT-OSS): constrains block sizes across a pair.
    hybrid: bool = False

    @property
    def weights_path(self) -> str:
        return self.path or f"/var/lib/xpdctl/models/{self.name}"


class Engine(_Strict):
    vllm_version: str = Field(min_length=1)  # the same vLLM release in every vendor image
    images: dict[str, str] = {}  # vendor -> engine image, pinned by digest
    xpdctl_image: str | None = None  # image running the router and KV agent on container hosts
    runtime: Literal["container", "native"] = "container"
    server: Literal["vllm", "sim"] = "vllm"
    # Interpreter with vllm and xpdctl for runtime native; relative to the inventory file's folder.
    python: str | None = None
    # Environment variables copied from the environment at render time into 0600 env files only.
    secret_env: list[str] = ["HF_TOKEN"]  # names of environment variables
    # When this variable is set at render time, its value becomes the engines' internal API key
    # (VLLM_API_KEY in their 0600 env files), which the router presents; unset, engines take no key.
    api_key_env: str = Field("XPDCTL_ENGINE_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    extra_args: list[str] = []  # appended to every engine's vLLM arguments
    restart_sec: int = Field(10, ge=0)


class Kv(_Strict):
    connector: Literal["nixl"] = "nixl"
    # auto: host memory when any pair crosses vendors, device memory (GPUDirect) within one vendor.
    buffer: Literal["auto", "cpu", "device"] = "auto"
    # Forced on every engine; auto: a backend every vendor in the cluster has, when vendors mix.
    attention_backend: str | None = None
    # auto leaves vLLM's default; on/off pass --[no-]disable-hybrid-kv-cache-manager.
    hybrid_kv_cache_manager: Literal["auto", "on", "off"] = "auto"
    # Across vendors with different TP no attention backend is known to work on both sides.
    allow_cross_vendor_tp_mismatch: bool = False
    # What a decode does when a KV load fails: fail the request (visible), or recompute the prompt
    # (right answers from a broken KV path; docs/kv-handshake.md). Rendered on every engine.
    load_failure_policy: Literal["fail", "recompute"] = "fail"
    side_channel_port: int = Field(5600, ge=1, le=65535)  # first NIXL side-channel port on each host
    # First port of the engines' KV event publishers on each host (pools with prefix_caching on).
    events_port: int = Field(5700, ge=1, le=65535)
    agent_port: int = Field(8788, ge=1, le=65535)
    # How long NIXL's progress thread in each vLLM engine may sleep in poll(). 0 (the default) keeps
    # NIXL's own: a thread polling without sleep, one busy core per engine worker even when idle. Any
    # other value (1 and 100 measured) made the decode's KV reads wait for vLLM's 30 s KV lease:
    # docs/kv-agent.md, "NIXL's progress thread in the engines".
    nixl_progress_poll_ms: int = Field(0, ge=0, le=10_000)


class Ssh(_Strict):
    user: str = "root"
    key: str | None = None
    port: int = Field(22, ge=1, le=65535)


class Defaults(_Strict):
    ssh: Ssh = Ssh()


class Gpu(_Strict):
    model: str = Field(min_length=1)
    count: int = Field(ge=1)  # for vendor cpu: cores given to engines


class Host(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str = Field(min_length=1)
    vendor: str | None = None  # a profile in xpdctl/vendors; needed on hosts that run engines
    gpu: Gpu | None = None
    nics: list[str] = []  # RDMA devices, e.g. mlx5_0 or mlx5_0:1
    # Line rate of each of those NICs (Gb/s, e.g. 200 for ConnectX-6 HDR, 400 for ConnectX-7 NDR):
    # what `advise` moves KV at. None: advise assumes its default and says so.
    nic_gbps: float | None = Field(None, gt=0)
    ssh: Ssh | None = None
    runtime: Literal["container", "native"] | None = None  # overrides engine.runtime
    vllm_version: str | None = None  # overrides engine.vllm_version (e.g. mid-upgrade)


class Pool(_Strict):
    hosts: list[str] = Field(min_length=1)
    tensor_parallel: int = Field(1, ge=1)
    # Default: all the host's GPUs / TP, or half of them when the host is in both pools.
    instances_per_host: int | None = Field(None, ge=1)
    port: int | None = Field(None, ge=1, le=65535)  # first HTTP port on each host; prefill 8100, decode 8200
    block_size: int | None = Field(None, ge=1)  # default: the vendor profile's
    # vLLM's automatic prefix caching, and with it the KV events the router's prefix routing reads
    # (docs/router.md). The report's benchmark grid ran with it off (inventory/lab*.yaml keep that).
    prefix_caching: bool = True
    extra_args: list[str] = []


class Pools(_Strict):
    prefill: Pool
    decode: Pool


class RouterAuth(_Strict):
    # open: anyone who reaches the router is served (say so on purpose); keys: only clients with a key
    # from keys_file, a 0600 YAML file (docs/router.md, Client keys), relative to the inventory file.
    mode: Literal["open", "keys"]
    keys_file: str | None = None


class RouterTls(_Strict):
    # PEM files on this machine, relative to the inventory file; render copies them to the router hosts.
    # `xpdctl tls generate` writes all three for clusters without a CA of their own (docs/security.md).
    cert_file: str = Field(min_length=1)  # the router's certificate (chain, leaf first)
    key_file: str = Field(min_length=1)  # its private key, unencrypted, mode 0600
    ca_file: str | None = None  # what xpdctl's own requests to the router trust; unset: the system's CAs


class RouterVip(_Strict):
    # The address clients use, held by one router host at a time (VRRP through keepalived, moved
    # within seconds when that host's router stops answering /health; docs/router.md, Two routers).
    address: str = Field(min_length=1)
    network: str = Field(min_length=1)  # the subnet it and every router host are on, e.g. 10.0.0.0/24
    interface: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")  # the hosts' NIC on it
    vrid: int = Field(51, ge=1, le=255)  # VRRP virtual router id: unique among VRRP users of the network


class Router(_Strict):
    # One host is the common case; two or more share a virtual address (router.vip). The old single
    # `host:` key is refused at load with the rewrite to make.
    hosts: list[str] = Field(min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    listen: str = "0.0.0.0"
    conditional_disagg: bool = False
    # With conditional_disagg: prompts shorter than this many tokens go to decode whole (the router's
    # conditional_disagg.min_prompt_tokens; `advise --write` sets the threshold it ranked).
    conditional_disagg_min_prompt_tokens: int = Field(MIN_PROMPT_TOKENS, ge=1)
    # When this variable is set at render time, its value becomes the admin API token (kept only in
    # the router's 0600 env file); unset, the admin API stays off.
    admin_token_env: str = Field("XPDCTL_ROUTER_ADMIN_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    tls: RouterTls | None = None  # unset: plain HTTP
    vip: RouterVip | None = None  # needed with two or more hosts
    auth: RouterAuth = Field(description="write auth: {mode: keys, keys_file: FILE} (client keys) or auth: {mode: open}")


class Firewall(_Strict):
    """A host firewall (nftables, its own table) on every host: the cluster's hosts and ``control``
    reach everything, anyone else only the ports named here (docs/security.md)."""

    # Addresses or networks xpdctl runs from: SSH, and its probes of engines, KV agents and the router.
    control: list[str] = Field(min_length=1)
    # Who may reach the router's port on the router hosts.
    clients: list[str] = ["0.0.0.0/0", "::/0"]
    # Who may reach the services' ports for scraping (/metrics): the Prometheus host.
    prometheus: list[str] = []
    # TCP ports anyone may reach on every host (e.g. 9100 for a node exporter).
    open_ports: list[int] = []


class Observability(_Strict):
    """What `render` writes for Prometheus and Grafana (docs/observability.md), and tracing."""

    scrape_interval_s: float = Field(15, gt=0)
    evaluation_interval_s: float = Field(15, gt=0)
    # How long a target must stay down before the service-down alerts fire.
    down_for_s: float = Field(60, gt=0)
    # Alert when the p99 over 5 minutes exceeds these: TTFT as clients see it at the router, ITL at
    # the decode engines. Defaults are placeholders to set from your own SLO.
    ttft_p99_s: float = Field(2.0, gt=0)
    itl_p99_s: float = Field(0.2, gt=0)
    # OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); set, the router exports spans.
    otlp_traces_endpoint: str | None = Field(None, pattern=r"^https?://")


class Inventory(_Strict):
    cluster: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    model: Model
    engine: Engine
    kv: Kv = Kv()
    defaults: Defaults = Defaults()
    hosts: list[Host] = Field(min_length=1)
    pools: Pools
    router: Router
    observability: Observability = Observability()
    firewall: Firewall | None = None  # unset: xpdctl filters nothing on the hosts
