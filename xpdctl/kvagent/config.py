"""The KV agent's configuration file: written by ``render``, read by ``xpdctl kv-agent --config``.

This schema is the contract between the plan and the agent; add fields with defaults only.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xpdctl.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pair(_Strict):
    """One prefill->decode instance pair this agent's host takes part in."""

    prefill: str  # service name, e.g. "xpd-lab-prefill-0"
    decode: str
    prefill_host: str
    decode_host: str
    prefill_url: str  # engine HTTP base URL, as the router knows it
    decode_url: str
    # The prefill instance's NIXL side channel (host:port) that the decode must reach.
    side_channel: str
    # The KV agent on the other host of the pair (base URL); equal to our own for same-host pairs.
    peer_agent: str


class KvAgentConfig(_Strict):
    host: str
    address: str  # this host's address as peers reach it
    listen_host: str = "0.0.0.0"
    port: int = Field(8788, ge=1, le=65535)
    # RDMA NICs the inventory declares for this host (informational; UCX_NET_DEVICES picks them).
    nics: list[str] = []
    # True when the inventory declares RDMA NICs: a probe carried by TCP is then reported as a fault.
    expect_rdma: bool = False
    # Size of the buffer this agent offers to peers; a probe reads the prefill-side agent's whole buffer.
    probe_size_mib: int = Field(64, ge=1)
    probe_interval_s: float = Field(60.0, gt=0)
    # Side channels and the reports relayed from peer agents are refreshed this often; a failed NIXL
    # probe is retried after this long, doubling on each failure up to probe_interval_s.
    check_interval_s: float = Field(5.0, gt=0)
    # An unreachable side channel counts as "waiting" (engine still loading) rather than "broken"
    # until this long after the agent started, unless it has been reachable before.
    startup_grace_s: float = Field(900.0, ge=0)
    side_channel_timeout_s: float = Field(2.0, gt=0)
    probe_timeout_s: float = Field(60.0, gt=0)
    # Probes that only time out keep a worked path's verdict until this long after its last successful
    # probe (an overloaded host); then, or on any failed transfer, the pair is broken.
    slow_probe_grace_s: float = Field(900.0, ge=0)
    # Probes that never reached the network (their worker still importing torch and nixl) keep a worked
    # path's verdict up to this long after its last successful probe: longer than the 17 minutes such
    # imports were seen to take on an overloaded 2-core host, short enough that "ok" never outlives an
    # hour without bytes moved by the engines' stack.
    never_started_grace_s: float = Field(3600.0, ge=0)
    ucx_env: dict[str, str] = {}
    # The NIXL module the host's engines import (xpdctl/releases/vllm.yaml: nixl, or rixl / nixl_rocm for
    # vLLM on ROCm), so that the probe moves bytes with the engines' own NIXL build.
    nixl_module: str = "nixl"
    pairs: list[Pair] = []


def load_kv_agent_config(path: Path) -> KvAgentConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read kv-agent config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: kv-agent config is not valid YAML: {exc}") from exc
    try:
        return KvAgentConfig.model_validate(data or {})
    except ValidationError as exc:
        raise InputError(
            f"{path}: invalid kv-agent config ({exc.error_count()} problem(s)); fix them or re-render it "
            "with `xpdctl render`",
            details=[f"{path}: {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()],
        ) from exc
