"""What the KV agent measures and reports: the shapes that cross process and HTTP boundaries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Region(BaseModel):
    """A registered host-memory buffer of the source agent and the digest of its contents."""

    addr: int
    length: int
    sha256: str


class SourceInfo(BaseModel):
    """What an initiator needs to read a source agent's probe buffers over NIXL."""

    agent: str
    metadata_b64: str  # nixl_agent.get_agent_metadata(), base64
    bulk: Region  # bandwidth is measured by reading this whole buffer
    small: Region  # latency is measured by reading this one repeatedly


class WorkerRequest(BaseModel):
    """Input of the probe worker process (one NIXL initiator, see ``xpdctl.kvagent.worker``)."""

    agent_name: str
    source: SourceInfo
    bulk_reads: int = 3
    small_reads: int = 20
    timeout_s: float = 60.0


class WorkerResult(BaseModel):
    ok: bool
    error: str | None = None
    verified: bool = False
    bandwidth_gbps: float | None = None  # gigabits per second, median of the bulk reads
    latency_ms: float | None = None  # median of the small reads


class TransferResult(BaseModel):
    """One NIXL probe between this host's agent and a peer's, shared by every pair of that host pair."""

    peer_host: str
    ok: bool
    reason: str = ""
    transport: str | None = None  # e.g. "tcp/lo", "cma/memory", "rc_mlx5/mlx5_0:1" (comma-joined lanes)
    transport_class: str | None = None  # rdma | tcp | shared-memory | ... (ucxinfo.TRANSPORT_CLASSES)
    bandwidth_gbps: float | None = None
    latency_ms: float | None = None
    verified: bool = False
    checked_at: str  # ISO-8601, UTC
    timed_out: bool = False  # the probe did not finish in time (as opposed to failing)
    # ... and never got as far as the network: its process was still importing nixl.
    never_started: bool = False


PairState = Literal["ok", "waiting", "broken"]


class PairResult(BaseModel):
    """The health of one prefill->decode KV path, as served by ``GET /pairs``.

    The router reads ``prefill_url``, ``decode_url``, ``ok`` and ``reason``; keep those names.
    """

    prefill: str
    decode: str
    prefill_host: str
    decode_host: str
    prefill_url: str
    decode_url: str
    side_channel: str
    ok: bool
    # waiting: not yet known to work (engine starting, first probe pending); broken: known not to work.
    state: PairState
    reason: str
    side_channel_reachable: bool | None = None
    transport: str | None = None
    transport_class: str | None = None
    bandwidth_gbps: float | None = None
    latency_ms: float | None = None
    verified: bool = False
    # The host whose agent ran the probe: the decode host pulls, as vLLM's decode pulls KV from prefill.
    measured_by: str
    checked_at: str | None = None
