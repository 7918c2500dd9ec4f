"""Latency and throughput of one deployment under one closed-loop workload.

``vllm bench serve --max-concurrency C`` keeps C requests in flight: a closed system of C clients
cycling through prefill (a load-dependent station per prefill instance: the prompts present share
its steps, up to the step budget, beyond which they queue), the KV transfer (a queue per decode
instance's link) and decode (all admitted sequences advance together, one token per step, the step
slowing as the batch grows). We solve it with Schweitzer's approximate mean value analysis: guess
the throughput, derive each station's population and residence time, recompute the throughput from
Little's law, repeat until it settles. The request rate cap of the report's runs (8 requests/s)
bounds the throughput from above.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from xpdctl.perfmodel import kvpath
from xpdctl.perfmodel.kvpath import KvPath
from xpdctl.perfmodel.roofline import InstanceModel, StepTime


class Workload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    isl: int = Field(ge=1)
    osl: int = Field(ge=1)
    concurrency: int = Field(ge=1)
    # The report's runs: REQ_RATE=8; None = unlimited (pure closed loop).
    request_rate: float | None = Field(8.0, gt=0)

    def label(self) -> str:
        return f"isl={self.isl},osl={self.osl},concurrency={self.concurrency}"


@dataclass(frozen=True)
class Deployment:
    """What serves the workload: prefill and decode instances and the KV path between them.

    ``local_prefill`` means the router's conditional disaggregation sends these prompts whole to
    the decode instances (prompt shorter than the threshold), which then prefill between decode steps.
    """

    prefill: InstanceModel
    prefill_instances: int
    decode: InstanceModel
    decode_instances: int
    path: KvPath
    # Line rate (Gb/s, all NICs) one decode instance's transfers get: the smaller side's NICs,
    # shared by the instances on the host.
    nic_gbps: float = 200.0
    local_prefill: bool = False
    hybrid_kv: bool = True


@dataclass(frozen=True)
class Prediction:
    ttft_s: float
    itl_s: float
    e2el_s: float
    tps: float
    requests_per_s: float
    prefill_s: float  # the prompt's prefill alone
    prefill_wait_s: float  # what sharing the instance with other prompts adds
    prefill_utilization: float
    transfer_s: float  # the transfer's stages plus waiting for the link
    transfer: kvpath.Transfer | None  # None: prefilled on the decode instance (no transfer)
    decode_batch: float  # sequences per decode instance
    congestion: float  # fitted ITL multiplier from KV bursts (1 = none)
    load_stall: float  # computed ITL multiplier from synchronous host->device loads (1 = none)
    prefill_step: StepTime
    decode_step: StepTime
    kv_bytes: float


_ITERATIONS = 400
_DAMPING = 0.5


def predict(dep: Deployment, work: Workload) -> Prediction:
    cal = dep.decode.cal
    model = dep.decode.model
    C = work.concurrency
    seen = (C - 1) / C  # Schweitzer: an arrival sees the others, not itself
    kv_bytes = 0.0 if dep.local_prefill else model.kv_bytes(work.isl, dep.hybrid_kv)
    prefill_engine = dep.decode if dep.local_prefill else dep.prefill
    prefill_servers = dep.decode_instances if dep.local_prefill else dep.prefill_instances
    context = work.isl + work.osl / 2
    xfer = None if dep.local_prefill else kvpath.transfer(kv_bytes, dep.path, cal, dep.prefill.tp, dep.decode.tp, dep.nic_gbps)
    # vLLM 0.32 saves a request's KV to host memory inside the prefill engine's step: it holds the engine.
    save_s = xfer.stage("save") if xfer else 0.0

    x = C / max(1e-3, work.osl * 0.005)  # any positive start; the iteration forgets it
    q_prefill = 0.0
    q_link = 0.0
    result: Prediction | None = None
    for _ in range(_ITERATIONS):
        own_prefill = prefill_engine.prefill_residence_s(work.isl, 1.0)[0]
        r_prefill, occupancy, pstep = prefill_engine.prefill_residence_s(work.isl, 1.0 + q_prefill * seen)
        wait_prefill = r_prefill - own_prefill
        utilization = min(1.0, x / prefill_servers * (occupancy + save_s))

        r_link = 0.0 if xfer is None else xfer.seconds * (1 + q_link * seen)

        # Sequences in decode per instance follow from the last throughput estimate (Little).
        decode_time_guess = result.itl_s * work.osl if result else work.osl * 0.005
        batch = max(1.0, min(C / dep.decode_instances, x / dep.decode_instances * decode_time_guess))
        dstep = dep.decode.decode_step(batch, context)
        resident = batch * model.kv_bytes(context, dep.hybrid_kv)
        congestion = kvpath.congestion_factor(resident, dep.path, cal)
        stall = 1.0 if xfer is None else kvpath.load_stall(x / dep.decode_instances, xfer)
        itl = dstep.total_s * congestion * stall
        if dep.local_prefill:
            # Prefill steps run on the decode engine: decode advances only in the time left over.
            itl /= max(0.05, 1.0 - utilization)

        ttft = r_prefill + r_link + itl
        e2el = ttft + (work.osl - 1) * itl
        x_new = C / e2el
        if work.request_rate is not None:
            x_new = min(x_new, work.request_rate)
        settled = abs(x_new - x) <= 1e-9 * x
        x = _DAMPING * x + (1 - _DAMPING) * x_new
        q_prefill = x / prefill_servers * r_prefill
        q_link = x / dep.decode_instances * r_link
        result = Prediction(
            ttft_s=ttft,
            itl_s=itl,
            e2el_s=e2el,
            tps=x * (work.isl + work.osl),
            requests_per_s=x,
            prefill_s=own_prefill,
            prefill_wait_s=wait_prefill,
            prefill_utilization=utilization,
            transfer_s=r_link,
            transfer=xfer,
            decode_batch=batch,
            congestion=congestion,
            load_stall=stall,
            prefill_step=pstep,
            decode_step=dstep,
            kv_bytes=kv_bytes,
        )
        if settled:
            break
    assert result is not None
    return result
