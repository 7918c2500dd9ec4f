"""The observed state of a cluster: what ``xpdctl status -o json`` prints.

These models are the contract between the observers (:mod:`xpdctl.observe`), the parsers
(:mod:`xpdctl.probes`) and everyone who reads status JSON (scripts, the upgrade controller). Add
fields with defaults only; ``docs/status-schema.json`` is generated from :class:`ClusterStatus` and
a test keeps it in step. Units are part of the field names (``_mib``, ``_pct``, ``_c``, ``_w``);
a value a tool did not report is ``null``, never a made-up zero.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Gpu(_Model):
    index: int
    vendor: str = Field(description="'nvidia' or 'amd'")
    name: str
    uuid: str | None = None
    bus_id: str | None = Field(None, description="PCI address as the tool prints it, e.g. 00000000:00:06.0")
    memory_total_mib: float | None = None
    memory_used_mib: float | None = None
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    ecc_errors_corrected: int | None = Field(None, description="since the driver loaded (volatile)")
    ecc_errors_uncorrected: int | None = Field(None, description="since the driver loaded (volatile)")
    # NVSwitch systems (HGX): a GPU is usable only once fabric manager has set up its fabric.
    fabric_state: str | None = Field(None, description="e.g. Completed, In Progress, Not Started (NVIDIA)")
    fabric_status: str | None = Field(None, description="e.g. Success, or the failure (NVIDIA)")


class Accelerators(_Model):
    """What the vendor tools report; empty when no tool answered."""

    driver_version: str | None = None
    cuda_version: str | None = None
    rocm_version: str | None = None
    gpus: list[Gpu] = []


class OsInfo(_Model):
    pretty_name: str | None = None
    id: str | None = None
    version_id: str | None = None
    kernel: str | None = Field(None, description="kernel release (uname -r)")
    arch: str | None = None


class PciDevice(_Model):
    address: str
    vendor_id: str = Field(description="e.g. 0x10de")
    device_id: str
    class_code: str = Field(description="e.g. 0x030200")
    vendor: str | None = Field(None, description="known vendor name, e.g. nvidia, amd, mellanox")
    kind: Literal["gpu", "nic", "other"] = "other"


class RdmaPort(_Model):
    device: str = Field(description="e.g. mlx5_0")
    port: int
    state: str = Field(description="e.g. PORT_ACTIVE")
    link_layer: str | None = None
    active_mtu: int | None = None
    firmware: str | None = None


class UnitState(_Model):
    service: str
    role: str
    unit: str
    active: str = Field(description="systemctl is-active: active, inactive, failed, activating, unknown")


class ContainerImage(_Model):
    service: str
    pinned: str = Field(description="the image render pinned (name@sha256:...)")
    running: str | None = Field(None, description="the image reference the running container was started with")
    digest: str | None = Field(None, description="repository digest of the image the container runs (sha256:...)")
    image_id: str | None = None
    error: str | None = Field(None, description="why the host's dockerd could not tell, or 'no container'")


class EngineStatus(_Model):
    service: str
    role: str
    url: str
    healthy: bool
    error: str | None = None
    vllm_version: str | None = None
    models: list[str] = []
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage_pct: float | None = None
    # vLLM's NIXL connector counters (vllm:nixl_* samples, summed over labels; histograms as _count/_sum):
    # on a decode they show that KV really moved, and how often a transfer failed.
    nixl: dict[str, float] = {}


class KvPairHealth(_Model):
    prefill_url: str
    decode_url: str
    ok: bool
    reason: str | None = None
    # The host whose agent measured the pair (the decode host); the other host's agent relays it.
    measured_by: str | None = None
    # What UCX chose for the agent's probe transfer (e.g. "rc_mlx5/mlx5_0:1") and its class (rdma, tcp, ...).
    transport: str | None = None
    transport_class: str | None = None


class KvAgentStatus(_Model):
    service: str
    url: str
    reachable: bool
    error: str | None = None
    pairs: list[KvPairHealth] = []


class RouterBackend(_Model):
    url: str
    pool: str | None = None
    generation: str | None = None
    state: str = Field(description="as the router reports it, e.g. healthy, unhealthy, unknown, draining")
    healthy: bool = Field(description="the router's health checks pass (a draining backend can be healthy)")
    draining: bool = False
    in_flight: int | None = None


class RouterStatus(_Model):
    service: str
    url: str
    reachable: bool = Field(description="GET /health answered at all")
    healthy: bool = Field(False, description="GET /health = 200: at least one usable prefill->decode pair")
    usable_pairs: int | None = None
    error: str | None = None
    backends_error: str | None = Field(
        None, description="why backends is empty: no admin token, or the admin API failed"
    )
    backends: list[RouterBackend] = []


class DriftEntry(_Model):
    path: str = Field(description="absolute path on the host")
    state: Literal["changed", "mode", "missing", "extra"] = Field(
        description="changed: other bytes; mode: same bytes, other permissions; missing; extra: left behind"
    )
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    expected_mode: str | None = Field(None, description="octal, e.g. 0600")
    actual_mode: str | None = None


class Problem(_Model):
    severity: Literal["error", "warning"]
    host: str | None = None
    what: str
    hint: str = Field(description="what a person can do about it")
    alert: str | None = Field(None, description="the rendered Prometheus alert that fires for it (docs/observability.md)")
    metric: str | None = Field(None, description="the metric (PromQL selector) that alert reads")


class HostStatus(_Model):
    name: str
    address: str
    reachable: bool
    error: str | None = None
    os: OsInfo = OsInfo()
    accelerators: Accelerators = Accelerators()
    pci: list[PciDevice] = []
    rdma: list[RdmaPort] = []
    units: list[UnitState] = []
    engines: list[EngineStatus] = []
    kv_agents: list[KvAgentStatus] = []
    routers: list[RouterStatus] = []
    containers: list[ContainerImage] = Field([], description="the image each container service runs (Docker SDK)")
    drift: list[DriftEntry] = []
    drift_checked: bool = Field(False, description="false when no rendered files were available to compare")
    holds_vip: bool | None = Field(
        None, description="router hosts behind router.vip: the host has the virtual address now; null elsewhere, "
                          "or when SSH did not answer")  # fmt: skip
    problems: list[Problem] = []


class NixlModule(_Model):
    module: str = Field(description="the module vLLM or the KV agent imports, e.g. nixl_cu12, nixl_rocm, nixl")
    distribution: str | None = Field(None, description="the wheel that provides it, e.g. nixl-cu12")
    version: str | None = None
    path: str | None = Field(None, description="null: the module is not installed in that stack")


class HostStack(_Model):
    """One engine host's stack as its engines' own interpreter (or image) reported it."""

    host: str
    roles: list[str]
    vendor: str | None = None
    command: list[str] = Field(description="what starts the engines' Python: the interpreter, or docker run IMAGE")
    declared_vllm: str | None = Field(None, description="the vLLM release the inventory declares for the host")
    vllm_version: str | None = None
    torch: str | None = None
    rocm: bool | None = Field(None, description="torch built for ROCm")
    nixl: list[NixlModule] = []
    ucx_version: str | None = None
    problem: str | None = Field(None, description="why the stack could not be read (then the rest is null)")


class HandshakeFactor(_Model):
    name: str = Field(description="what both sides must agree on, e.g. vllm_version, attention_backend, nixl")
    prefill: str
    decode: str
    ok: bool
    why: str


class StackPair(_Model):
    prefill: str = Field(description="a prefill host standing for its distinct stack")
    decode: str = Field(description="a decode host standing for its distinct stack")
    factors: list[HandshakeFactor]


class Stacks(_Model):
    """The engine stacks and the KV handshake per pair of distinct stacks, as `up` or `upgrade` last read
    them (docs/kv-handshake.md); the running engines' own ``/version`` is compared in ``problems``."""

    read_at: str = Field(description="UTC, ISO 8601")
    hosts: list[HostStack]
    pairs: list[StackPair]


class VipStatus(_Model):
    address: str = Field(description="router.vip.address")
    holders: list[str] = Field(description="the router hosts that have the address now: one when all is well")


class ClusterStatus(_Model):
    schema_version: int = SCHEMA_VERSION
    cluster: str
    observed_at: str = Field(description="UTC, ISO 8601")
    duration_s: float
    healthy: bool = Field(description="no problem of severity error anywhere")
    hosts: list[HostStatus]
    vip: VipStatus | None = Field(None, description="with router.vip: which router host holds the address")
    problems: list[Problem] = Field(
        [], description="every host's problems, in host order, then the virtual address's (host null)")
    stacks: Stacks | None = Field(None, description="null until `up` read the engine stacks of the cluster")


def json_schema() -> dict:
    """JSON Schema of ``xpdctl status -o json``; ``docs/status-schema.json`` is this, pretty-printed."""
    schema = ClusterStatus.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "xpdctl status"
    return schema
