"""Every way an inventory's hosts can serve: which hosts prefill, which decode, TP, instance counts.

An option is a pool assignment the inventory could be given: prefill and decode hosts (a host may
sit in both pools, each then getting half its GPUs), the tensor-parallel size of each pool, and
whether the router's conditional disaggregation sends prompts below a threshold whole to decode.
Constraints come from the KV rules (REFERENCE section 2): decode TP >= prefill TP, and equal TP
across vendors unless the inventory allows otherwise; the weights must fit each TP group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

from xpdctl.errors import InputError
from xpdctl.inventory.schema import Host, Inventory
from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.calibration import Calibration
from xpdctl.perfmodel.kvpath import KvPath
from xpdctl.perfmodel.queueing import Deployment
from xpdctl.perfmodel.roofline import InstanceModel
from xpdctl.perfmodel.specs import HardwareProfile, ModelSpec, find_hardware

_TP_SIZES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class PoolChoice:
    hosts: tuple[str, ...]
    hardware: str  # profile name
    tp: int
    instances_per_host: int

    @property
    def instances(self) -> int:
        return len(self.hosts) * self.instances_per_host

    def describe(self) -> str:
        return f"{self.instances}x {self.hardware} TP{self.tp} on {','.join(self.hosts)}"


@dataclass(frozen=True)
class Option:
    prefill: PoolChoice
    decode: PoolChoice
    path: KvPath
    # Prompts shorter than this go whole to decode (router conditional disaggregation); None = off.
    threshold: int | None = None

    def key(self) -> str:
        cond = f" cond<{self.threshold}" if self.threshold else ""
        return f"P[{self.prefill.describe()}] D[{self.decode.describe()}] kv={self.path}{cond}"

    def signature(self) -> dict:
        """What bench results record, so measurements can be matched to options later."""
        return {
            "prefill": {"hardware": self.prefill.hardware, "tp": self.prefill.tp, "instances": self.prefill.instances},
            "decode": {"hardware": self.decode.hardware, "tp": self.decode.tp, "instances": self.decode.instances},
            "kv_path": self.path,
            "threshold": self.threshold,
        }

    def deployment(self, model: ModelSpec, cal: Calibration, hardware: dict[str, HardwareProfile], isl: int,
                   host_nic_gbps: float | None = None, hybrid_kv: bool = True) -> Deployment:
        """``host_nic_gbps``: line rate of all NICs of the slower of the prefill and decode hosts."""
        return Deployment(
            prefill=InstanceModel(hardware[self.prefill.hardware], self.prefill.tp, model, cal),
            prefill_instances=self.prefill.instances,
            decode=InstanceModel(hardware[self.decode.hardware], self.decode.tp, model, cal),
            decode_instances=self.decode.instances,
            path=self.path,
            # Instances on one host share its NICs.
            nic_gbps=(host_nic_gbps or cal.default_nic_gbps) / self.decode.instances_per_host,
            local_prefill=self.threshold is not None and isl < self.threshold,
            hybrid_kv=hybrid_kv,
        )


@dataclass(frozen=True)
class EngineHost:
    host: Host
    hardware: HardwareProfile


def engine_hosts(inv: Inventory) -> tuple[list[EngineHost], list[str]]:
    """Hosts with GPUs the model knows, and a note for each host left out."""
    found, skipped = [], []
    for host in inv.hosts:
        if host.gpu is None:
            continue
        profile = find_hardware(host.gpu.model)
        if profile is None:
            skipped.append(f"{host.name}: no performance profile for GPU {host.gpu.model!r}; left out")
            continue
        found.append(EngineHost(host, profile))
    return found, skipped


def _tp_choices(gpus: int, hw: HardwareProfile, model: ModelSpec, cal: Calibration) -> list[int]:
    return [tp for tp in _TP_SIZES if tp <= gpus and gpus % tp == 0 and InstanceModel(hw, tp, model, cal).fits()]


def _pool(hosts: list[EngineHost], tp: int, gpus_each: int) -> PoolChoice:
    return PoolChoice(tuple(h.host.name for h in hosts), hosts[0].hardware.name, tp, gpus_each // tp)


def _groups(hosts: list[EngineHost]) -> dict[str, list[EngineHost]]:
    groups: dict[str, list[EngineHost]] = {}
    for h in hosts:
        groups.setdefault(f"{h.hardware.name}/{h.host.gpu.count}", []).append(h)
    return groups


def enumerate_options(inv: Inventory, model: ModelSpec, cal: Calibration, thresholds: list[int] = ()) -> list[Option]:
    """Every admissible assignment of the inventory's GPU hosts to prefill and decode pools."""
    hosts, _ = engine_hosts(inv)
    if not hosts:
        raise InputError("the inventory has no GPU hosts with a performance profile; give hosts gpu.model "
                         "(e.g. H100-SXM, MI300X) so advise can model them")
    groups = _groups(hosts)
    allow_mismatch = inv.kv.allow_cross_vendor_tp_mismatch
    options: list[Option] = []
    for (pk, pgroup), (dk, dgroup) in product(groups.items(), repeat=2):
        phw, dhw = pgroup[0].hardware, dgroup[0].hardware
        path = kvpath.choose_path(phw, dhw, inv.kv.buffer)
        cross_vendor = phw.vendor != dhw.vendor
        if pk != dk:
            splits = [(pgroup[:np_], dgroup[:nd], pgroup[0].host.gpu.count, dgroup[0].host.gpu.count)
                      for np_ in range(1, len(pgroup) + 1) for nd in range(1, len(dgroup) + 1)]
        else:
            gpus = pgroup[0].host.gpu.count
            splits = [(pgroup[:np_], pgroup[np_:np_ + nd], gpus, gpus)
                      for np_ in range(1, len(pgroup)) for nd in range(1, len(pgroup) - np_ + 1)]
            if gpus >= 2:  # the same hosts in both pools, half their GPUs each
                splits += [(pgroup[:n], pgroup[:n], gpus // 2, gpus // 2) for n in range(1, len(pgroup) + 1)]
        for phosts, dhosts, pgpus, dgpus in splits:
            for ptp, dtp in product(_tp_choices(pgpus, phw, model, cal), _tp_choices(dgpus, dhw, model, cal)):
                if dtp < ptp or (cross_vendor and ptp != dtp and not allow_mismatch):
                    continue
                base = Option(_pool(phosts, ptp, pgpus), _pool(dhosts, dtp, dgpus), path)
                options.append(base)
                options.extend(replace(base, threshold=t) for t in thresholds)
    return options


def current_option(inv: Inventory, threshold: int | None = None) -> Option | None:
    """The option the inventory's pools describe now (None when a pooled host has no profile)."""
    by_name = {h.host.name: h for h in engine_hosts(inv)[0]}
    chosen = []
    for role in ("prefill", "decode"):
        p = getattr(inv.pools, role)
        members = [by_name.get(name) for name in p.hosts]
        if not members or any(m is None for m in members) or len({m.hardware.name for m in members}) != 1:
            return None
        shared = set(inv.pools.prefill.hosts) & set(inv.pools.decode.hosts)
        gpus = members[0].host.gpu.count // (2 if members[0].host.name in shared else 1)
        per_host = p.instances_per_host or gpus // p.tensor_parallel
        chosen.append(PoolChoice(tuple(p.hosts), members[0].hardware.name, p.tensor_parallel, per_host))
    phw, dhw = (by_name[c.hosts[0]].hardware for c in chosen)
    if threshold is None and inv.router.conditional_disagg:
        threshold = inv.router.conditional_disagg_min_prompt_tokens
    return Option(chosen[0], chosen[1], kvpath.choose_path(phw, dhw, inv.kv.buffer), threshold)
