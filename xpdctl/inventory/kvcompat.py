"""The KV-compatibility engine: decides and explains the KV path of every prefill->decode pair.

vLLM's NIXL handshake refuses a pair unless a list of factors match (docs/kv-handshake.md), and
some mismatches it does not catch at all (an fp8 KV cache across vendors passes the handshake and
decodes garbage). This module turns those facts into decisions made before anything is deployed:

- cluster-wide settings every engine gets (KV buffer, forced attention backend), because the router
  may pair any prefill with any decode of the same generation;
- per host pair, the decision and the reasons, for ``xpdctl check``;
- refusals, as inventory problems pointing at the field to change;
- the generation label: a short hash of the factors the handshake compares.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from xpdctl.inventory.problems import Problem
from xpdctl.inventory.schema import Host, Inventory
from xpdctl.inventory.topology import hosts_by_name, pool, vllm_version_of
from xpdctl.inventory.kvhandshake import FactorCheck, compare, side_values
from xpdctl.releases import NixlImport, Release, UnknownRelease, nixl_interop, public_release, release
from xpdctl.vendors import VendorProfile, vendor_profiles

CONNECTOR = "NixlConnector"
# vLLM's NIXL connector reads remote blocks from the decode side; push is not offered here.
TRANSFER_MODE = "pull"


@dataclass(frozen=True)
class Side:
    role: str
    host: str
    host_index: int
    vendor: VendorProfile
    tensor_parallel: int
    block_size: int
    vllm_version: str
    nics: tuple[str, ...]
    release: Release | None  # None: the simulator, which has no NIXL handshake
    nixl: NixlImport | None

    @property
    def nixl_text(self) -> str:
        if self.nixl is None:
            return "no NIXL (simulator)"
        return f"imports {self.nixl.module} ({self.nixl.build or 'no build pinned'})"


@dataclass(frozen=True)
class KvSettings:
    """What every engine of the cluster is configured with."""

    buffer: str  # "cpu" (host memory) or "device"
    forced_backend: str | None  # --attention-backend on every engine, or None for vendor defaults
    kv_cache_dtype: str
    hybrid_kv_cache_manager: str  # auto | on | off
    reasons: tuple[str, ...] = ()
    load_failure_policy: str = "fail"  # kv_load_failure_policy of every engine
    # vLLM's own comparison of handshake factors (kv_connector_extra_config enforce_handshake_compat).
    handshake_check: bool = True

    def buffer_device(self, vendor: VendorProfile) -> str:
        return "cpu" if self.buffer == "cpu" else vendor.device_type

    def attention_backend(self, vendor: VendorProfile) -> str:
        return self.forced_backend or vendor.default_attention_backend


@dataclass
class PairDecision:
    prefill: Side
    decode: Side
    cross_vendor: bool
    kv_buffer_device: dict[str, str]  # role -> kv_buffer_device
    attention_backend: str
    backend_forced: bool
    kv_cache_dtype: str
    transfer_mode: str
    handshake_check: bool
    handshake: list[FactorCheck] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # allowed, but nothing shows it works
    refusals: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refusals


@dataclass
class KvDecision:
    settings: KvSettings
    pairs: list[PairDecision]
    problems: list[Problem]
    warnings: list[Problem] = field(default_factory=list)


def _release(inv: Inventory, host: Host, index: int, problems: list[Problem]) -> tuple[Release | None, NixlImport | None]:
    """The host's vLLM release and NIXL import; the simulator has neither (and any version string)."""
    if inv.engine.server == "sim":
        return None, None
    try:
        found = release(vllm_version_of(inv, host))
    except UnknownRelease as exc:
        loc = ("hosts", index, "vllm_version") if host.vllm_version else ("engine", "vllm_version")
        problems.append(Problem(loc, exc.message))
        return None, None
    return found, found.nixl_import(host.vendor or "")


def _sides(inv: Inventory, role: str, problems: list[Problem]) -> list[Side]:
    """One side per valid host of the pool; hosts the rules reject are left out."""
    vendors = vendor_profiles()
    hosts = hosts_by_name(inv)
    index = {h.name: i for i, h in reversed(list(enumerate(inv.hosts)))}
    p = pool(inv, role)
    sides = []
    for name in dict.fromkeys(p.hosts):
        host: Host | None = hosts.get(name)
        if host is None or host.vendor not in vendors or host.gpu is None:
            continue
        vendor = vendors[host.vendor]
        found, nixl = _release(inv, host, index[name], problems)
        sides.append(
            Side(
                role=role,
                host=name,
                host_index=index[name],
                vendor=vendor,
                tensor_parallel=p.tensor_parallel,
                block_size=p.block_size or vendor.default_block_size,
                vllm_version=vllm_version_of(inv, host),
                nics=tuple(host.nics),
                release=found,
                nixl=nixl,
            )
        )
    return sides


def _buffer(inv: Inventory, first_cross: tuple[Side, Side] | None,
            reasons: list[str], problems: list[Problem]) -> str:
    buffer = inv.kv.buffer
    if buffer == "auto":
        buffer = "cpu" if first_cross else "device"
        reasons.append(
            f"kv buffer cpu (host memory): pairs cross vendors (e.g. {_names(first_cross)}), and GPUDirect between "
            "vendors is not available"
            if first_cross
            else "kv buffer device: every pair stays within one vendor, so KV moves GPU to GPU"
        )
    elif buffer == "device" and first_cross:
        sides = "; ".join(f"{s.host} {s.vendor.name} {s.nixl_text}" for s in first_cross)
        problems.append(
            Problem(
                ("kv", "buffer"),
                f"device memory cannot carry KV across vendors (pair {_names(first_cross)}: {sides}); "
                "use buffer: cpu or auto",
            )
        )
    else:
        reasons.append(f"kv buffer {buffer}: set in the inventory")
    return buffer


def _forced_backend(inv: Inventory, vendors: list[VendorProfile], crossing: bool,
                    reasons: list[str], problems: list[Problem]) -> str | None:
    forced = inv.kv.attention_backend
    if forced:
        for vendor in vendors:
            if forced not in vendor.attention_backends:
                problems.append(
                    Problem(
                        ("kv", "attention_backend"),
                        f"{forced} is not known to run on {vendor.name} "
                        f"(known: {', '.join(vendor.attention_backends)}); pick one every vendor has",
                    )
                )
        reasons.append(f"attention backend {forced}: forced by the inventory on every engine")
        return forced
    if not crossing:
        return None
    common = [b for b in vendors[0].attention_backends if all(b in v.attention_backends for v in vendors)]
    defaults = ", ".join(f"{v.name} {v.default_attention_backend}" for v in vendors)
    if not common:
        problems.append(
            Problem(
                ("kv", "attention_backend"),
                f"no attention backend runs on all of {', '.join(v.name for v in vendors)} ({defaults}); "
                "set kv.attention_backend to one you have verified, or split the pools by vendor",
            )
        )
        return None
    reasons.append(
        f"attention backend {common[0]} forced on every engine: vendor defaults differ ({defaults}) "
        "and the NIXL handshake compares backend names"
    )
    return common[0]


def _kv_cache_dtype(inv: Inventory, cross: list[tuple[Side, Side]], reasons: list[str], problems: list[Problem]) -> str:
    dtype = inv.model.kv_cache_dtype
    if dtype.startswith("fp8"):
        for p, d in cross:
            formats = (p.vendor.fp8_kv_format, d.vendor.fp8_kv_format)
            if None in formats or formats[0] != formats[1]:
                problems.append(
                    Problem(
                        ("model", "kv_cache_dtype"),
                        f"{dtype} KV cache across vendors ({p.host} {p.vendor.name}: {formats[0] or 'unknown'}, "
                        f"{d.host} {d.vendor.name}: {formats[1] or 'unknown'}): the handshake compares only "
                        "the name 'fp8', so decode would read wrong values and answer with HTTP 200; "
                        "use kv_cache_dtype: auto",
                    )
                )
                break
    reasons.append(f"kv cache dtype {dtype}" + (f" (the model dtype, {inv.model.dtype})" if dtype == "auto" else ""))
    return dtype


def _failure_policy(inv: Inventory, reasons: list[str]) -> str:
    policy = inv.kv.load_failure_policy
    if policy == "recompute":
        reasons.append(
            "kv load failure policy recompute (kv.load_failure_policy): a decode whose KV load fails computes "
            "the prompt again, so a broken KV path answers correctly and shows only in latency and the "
            "vllm:nixl_* counters"
        )
    else:
        reasons.append(
            "kv load failure policy fail, rendered on every engine: a failed KV load fails the request instead "
            "of being recomputed behind a correct answer (vLLM 0.15.0 defaults to recompute)"
        )
    return policy


def _names(pair: tuple[Side, Side]) -> str:
    return f"{pair[0].host} -> {pair[1].host}"


def _settings(inv: Inventory, sides: list[Side], cross: list[tuple[Side, Side]]) -> tuple[KvSettings, list[Problem]]:
    """Cluster-wide choices: the router may pair any prefill with any decode of one generation."""
    problems: list[Problem] = []
    reasons: list[str] = []
    vendors = sorted({s.vendor.name: s.vendor for s in sides}.values(), key=lambda v: v.name)
    settings = KvSettings(
        buffer=_buffer(inv, cross[0] if cross else None, reasons, problems),
        forced_backend=_forced_backend(inv, vendors, bool(cross), reasons, problems),
        kv_cache_dtype=_kv_cache_dtype(inv, cross, reasons, problems),
        hybrid_kv_cache_manager=inv.kv.hybrid_kv_cache_manager,
        load_failure_policy=_failure_policy(inv, reasons),
        reasons=tuple(reasons),
    )
    return settings, problems


def _version_loc(inv: Inventory, side: Side) -> tuple:
    if inv.hosts[side.host_index].vllm_version:
        return ("hosts", side.host_index, "vllm_version")
    return ("engine", "vllm_version")


def _pair(inv: Inventory, settings: KvSettings, p: Side, d: Side) -> PairDecision:
    cross = p.vendor.name != d.vendor.name
    buffers = {"prefill": settings.buffer_device(p.vendor), "decode": settings.buffer_device(d.vendor)}
    backend_p, backend_d = settings.attention_backend(p.vendor), settings.attention_backend(d.vendor)
    decision = PairDecision(
        prefill=p,
        decode=d,
        cross_vendor=cross,
        kv_buffer_device=buffers,
        attention_backend=backend_p,
        backend_forced=settings.forced_backend is not None,
        kv_cache_dtype=settings.kv_cache_dtype,
        transfer_mode=TRANSFER_MODE,
        handshake_check=settings.handshake_check,
    )
    why, refuse = decision.reasons.append, decision.refusals.append
    kind = f"cross-vendor ({p.vendor.name} -> {d.vendor.name})" if cross else f"same vendor ({p.vendor.name})"
    if buffers["prefill"] == "cpu" and buffers["decode"] == "cpu":
        how = "staged through host memory" if p.vendor.device_type != "cpu" else "in host memory (cpu devices)"
        why(f"{kind}: KV {how}, kv_buffer_device cpu on both sides")
    else:
        why(f"{kind}: KV moves device to device (kv_buffer_device {buffers['prefill']}), GPUDirect RDMA")
    if backend_p != backend_d:  # only reachable with a refused backend choice; say so per pair too
        refuse(
            Problem(
                ("kv", "attention_backend"),
                f"{p.host} would use {backend_p} and {d.host} {backend_d}: the handshake fails; "
                "set kv.attention_backend",
            )
        )
    elif settings.forced_backend:
        why(f"attention backend {backend_p} forced on both")
    else:
        why(f"attention backend {backend_p} (vendor default) on both")
    if p.vllm_version != d.vllm_version and public_release(p.vllm_version) == public_release(d.vllm_version):
        why(f"vLLM {p.vllm_version} ({p.host}) and {d.vllm_version} ({d.host}): one public release, local "
            "build suffixes differ")
    elif p.vllm_version != d.vllm_version:
        refuse(
            Problem(
                _version_loc(inv, d if inv.hosts[d.host_index].vllm_version else p),
                f"{p.host} runs vLLM {p.vllm_version} and {d.host} {d.vllm_version}: the NIXL handshake "
                "refuses different versions; run one release on both",
            )
        )
    else:
        why(f"vLLM {p.vllm_version} on both")
    if d.tensor_parallel < p.tensor_parallel:
        refuse(
            Problem(
                ("pools", "decode", "tensor_parallel"),
                f"decode TP {d.tensor_parallel} on {d.host} is below prefill TP {p.tensor_parallel} on {p.host}; "
                "vLLM requires decode TP >= prefill TP: raise decode TP or lower prefill TP",
            )
        )
    elif cross and d.tensor_parallel != p.tensor_parallel and not inv.kv.allow_cross_vendor_tp_mismatch:
        refuse(
            Problem(
                ("pools", "decode", "tensor_parallel"),
                f"TP {p.tensor_parallel} ({p.host}) -> {d.tensor_parallel} ({d.host}) across vendors: no "
                "attention backend is known to handle different TP on both; use equal TP, or set "
                "kv.allow_cross_vendor_tp_mismatch: true after verifying a backend",
            )
        )
    else:
        why(f"TP {p.tensor_parallel} -> {d.tensor_parallel}")
    if p.block_size == d.block_size:
        why(f"block size {p.block_size} on both")
    elif p.block_size < d.block_size and not inv.model.hybrid:
        why(f"block size {p.block_size} -> {d.block_size}: prefill's is smaller and the model is not hybrid")
    else:
        reason = (
            "the model is hybrid (sliding-window and full attention)"
            if inv.model.hybrid
            else "prefill's must be the smaller"
        )
        refuse(
            Problem(
                ("pools", "prefill", "block_size"),
                f"block sizes differ ({p.host} {p.block_size}, {d.host} {d.block_size}) and {reason}; "
                "set the same block_size on both pools",
            )
        )
    _window_gap(inv, settings, decision)
    why(_prefix_caching_reason(inv))
    why(_nixl_reason(p, d))
    _nixl_interop(inv, decision)
    _handshake(inv, settings, decision)
    why(f"transfer mode {TRANSFER_MODE}: decode reads prefill's KV blocks (NIXL READ)")
    if p.host == d.host:
        why("same host: UCX moves KV through shared memory or loopback")
    elif p.nics and d.nics:
        why(f"network: RDMA ({','.join(p.nics)} -> {','.join(d.nics)})")
    else:
        bare = " and ".join(s.host for s in (p, d) if not s.nics)
        why(f"network: no RDMA NICs declared on {bare}, so UCX moves KV over TCP")
    return decision


def _window_gap(inv: Inventory, settings: KvSettings, decision: PairDecision) -> None:
    """A sliding-window model with the hybrid KV cache manager not off: the prefill's release may free a
    block the decode still reads (docs/kv-handshake.md, "PD answers and prompt length")."""
    p, d = decision.prefill, decision.decode
    gap = p.release.pd_window_gap if p.release is not None else None
    if not inv.model.hybrid or settings.hybrid_kv_cache_manager == "off" or gap is None:
        return
    decision.warnings.append(Problem(
        ("kv", "hybrid_kv_cache_manager"),
        f"{p.host} -> {d.host}: with the hybrid KV cache manager {settings.hybrid_kv_cache_manager}, vLLM "
        f"{p.release.version}'s prefill frees a sliding-window block the decode still reads when (prompt tokens "
        f"- sliding window + 1) is a multiple of the block size (vllm {p.release.version} {gap}); such answers "
        "may differ from an aggregated engine's; kv.hybrid_kv_cache_manager: off avoids it at the cost of "
        "full-length KV for the sliding-window layers (docs/kv-handshake.md)",
    ))  # fmt: skip


def _prefix_caching_reason(inv: Inventory) -> str:
    # Not a generation factor: vLLM's NIXL handshake does not compare it, and blocks a decode has
    # cached are simply not pulled (vllm/distributed/kv_transfer/kv_connector/v1/nixl/pull_scheduler.py:62-63
    # in 0.32: count = prompt tokens - locally computed tokens).
    on = {role: pool(inv, role).prefix_caching for role in ("prefill", "decode")}
    if on["decode"]:
        tail = "decode pulls only the prompt blocks it has not cached itself"
    else:
        tail = "decode pulls the whole prompt's KV on every request"
    words = {True: "on", False: "off"}
    return (f"prefix caching: prefill {words[on['prefill']]}, decode {words[on['decode']]} "
            f"(pools.<role>.prefix_caching; not a KV-compatibility factor): {tail}")


def _nixl_reason(p: Side, d: Side) -> str:
    if p.release is None or d.release is None or p.nixl is None or d.nixl is None:
        return "NIXL: simulator engines, no NIXL handshake"
    text = f"NIXL: {p.host} {p.nixl_text}, {d.host} {d.nixl_text}"
    if p.release == d.release:
        lines = ",".join(dict.fromkeys(str(s.nixl.line) for s in (p, d) if s.nixl))
        text += f" (vllm {p.release.version} {p.release.nixl.file}:{lines})"
    else:
        text += "".join(f"; {s.host}: vllm {s.release.version} {s.release.nixl.file}:{s.nixl.line}"
                        for s in (p, d) if s.release and s.nixl)  # fmt: skip
    return text


def _nixl_interop(inv: Inventory, decision: PairDecision) -> None:
    """The builds xpdctl pairs with each side's release, against the measured interop table: a pair
    measured broken is refused, one never measured is a warning saying why or what to run."""
    p, d = decision.prefill, decision.decode
    if p.nixl is None or d.nixl is None or (p.nixl.module, p.nixl.build) == (d.nixl.module, d.nixl.build):
        return
    builds = (p.nixl.build or f"{p.nixl.module} (no build pinned)", d.nixl.build or f"{d.nixl.module} (no build pinned)")
    verdict = nixl_interop().verdict(builds, (p.nixl.module, d.nixl.module))
    if verdict.result == "broken":
        decision.refusals.append(Problem(_version_loc(inv, d), f"{p.host} -> {d.host}: {verdict.why}"))
        return
    decision.reasons.append(f"NIXL builds differ: {verdict.why}")
    if verdict.result == "not measured":
        decision.warnings.append(Problem(_version_loc(inv, d), f"{p.host} -> {d.host}: {verdict.why}"))


# Where to change a factor that keeps a pair from a handshake xpdctl can vouch for.
_FACTOR_FIELD = {
    "is_hma_enabled": ("kv", "hybrid_kv_cache_manager"),
    "speculative_config": ("pools", "decode", "extra_args"),
    "num_kv_heads": ("pools", "decode", "extra_args"),
    "head_size": ("pools", "decode", "extra_args"),
    "num_hidden_layers": ("pools", "decode", "extra_args"),
}
_REFUSED_ELSEWHERE = {"vllm_version", "attn_backend_name"}  # their own rules above say what to do


def _values(inv: Inventory, settings: KvSettings, side: Side) -> dict[str, str]:
    return side_values(inv, side.role, side.vllm_version, settings.attention_backend(side.vendor),
                       settings.kv_cache_dtype, settings.hybrid_kv_cache_manager)


def _handshake(inv: Inventory, settings: KvSettings, decision: PairDecision) -> None:
    """Explain vLLM's handshake for the pair, one line per factor; refuse what cannot be vouched for."""
    p, d = decision.prefill, decision.decode
    if p.release is None or d.release is None or p.release != d.release:
        return  # the simulator, or different releases (refused above)
    rel = p.release
    decision.handshake = compare(rel, _values(inv, settings, p), _values(inv, settings, d), settings.handshake_check)
    if settings.handshake_check:
        decision.reasons.append(
            f"vLLM's handshake check on: the decode compares the hash of {len(rel.handshake.factors)} factors "
            f"({rel.source('handshake')}) and refuses a mismatch; xpdctl's view of them:"
        )
    else:
        decision.reasons.append(
            f"vLLM's handshake check off (enforce_handshake_compat false, {rel.source('switch')}): the version "
            f"strings differ, so xpdctl compares the {len(rel.handshake.factors)} factors itself "
            f"({rel.source('handshake')}):"
        )
    for check in decision.handshake:
        decision.reasons.append(f"  {check.line()}")
        if not check.ok and check.factor not in _REFUSED_ELSEWHERE:
            what = "vLLM's check is off, so nothing else compares it" if not settings.handshake_check else \
                "vLLM would refuse the handshake"
            decision.refusals.append(Problem(
                _FACTOR_FIELD.get(check.factor, ("engine", "vllm_version")),
                f"handshake factor {check.factor} of {p.host} -> {d.host}: {check.prefill} vs {check.decode} "
                f"({check.how}); {what}: make it equal on both pools",
            ))  # fmt: skip


def _suffix_only(prefills: list[Side], decodes: list[Side]) -> tuple[Side, Side] | None:
    """A pair whose version strings differ only in a local build suffix, if any."""
    for p in prefills:
        for d in decodes:
            if p.release is not None and p.vllm_version != d.vllm_version and p.release == d.release:
                return p, d
    return None


def _handshake_setting(settings: KvSettings, prefills: list[Side], decodes: list[Side]) -> KvSettings:
    """vLLM's check off on every engine when some pair's version strings differ only in a local suffix:
    the router may pair any prefill with any decode, and only the decode side compares."""
    pair = _suffix_only(prefills, decodes)
    if pair is None:
        return settings
    p, d = pair
    reason = (
        f"vLLM's own handshake check off on every engine (kv_connector_extra_config enforce_handshake_compat "
        f"false): {p.host} runs {p.vllm_version} and {d.host} {d.vllm_version}, one public release with "
        f"different local build suffixes, and vLLM hashes the exact version string; xpdctl compares every "
        "other factor itself (per pair below)"
    )
    return replace(settings, handshake_check=False, reasons=settings.reasons + (reason,))


def decide(inv: Inventory) -> KvDecision:
    release_problems: list[Problem] = []
    prefills, decodes = _sides(inv, "prefill", release_problems), _sides(inv, "decode", release_problems)
    cross = [(p, d) for p in prefills for d in decodes if p.vendor.name != d.vendor.name]
    settings, problems = _settings(inv, prefills + decodes, cross)
    settings = _handshake_setting(settings, prefills, decodes)
    problems = release_problems + problems
    pairs = [_pair(inv, settings, p, d) for p in prefills for d in decodes]
    for pair in pairs:
        problems.extend(pair.refusals)
    warnings = list(dict.fromkeys(w for pair in pairs for w in pair.warnings))
    return KvDecision(settings=settings, pairs=pairs, problems=list(dict.fromkeys(problems)), warnings=warnings)


def generation_factors(inv: Inventory, settings: KvSettings, vendor: VendorProfile, vllm_version: str) -> dict:
    """What vLLM's compute_nixl_compatibility_hash compares (docs/kv-handshake.md), as we know it up front.

    KV heads, head size and layer count follow from the model, revision and quantization.
    """
    # With vLLM's check off the local suffix plays no part in the handshake: the release does.
    version = {"vllm_version": vllm_version} if settings.handshake_check else \
        {"vllm_version": public_release(vllm_version), "enforce_handshake_compat": False}
    return {
        **version,
        "connector": CONNECTOR,
        "model": inv.model.weights_path,
        "model_name": inv.model.name,
        "revision": inv.model.revision,
        "quantization": inv.model.quantization,
        "dtype": inv.model.dtype,
        "attention_backend": settings.attention_backend(vendor),
        "kv_cache_dtype": settings.kv_cache_dtype,
        "hybrid_kv_cache_manager": settings.hybrid_kv_cache_manager,
        "speculative_config": None,
        "transfer_mode": TRANSFER_MODE,
    }


def generation(factors: dict) -> str:
    digest = hashlib.sha256(json.dumps(factors, sort_keys=True).encode()).hexdigest()
    return f"g{digest[:10]}"

