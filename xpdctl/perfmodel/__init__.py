"""A performance model of prefill/decode assignments: roofline per step, queueing per workload.

What it models, from the hardware table (``hardware.yaml``) and the model's shape (``models.yaml``):

- **Engine steps** (:mod:`.roofline`): FLOPs over sustained compute plus bytes over sustained
  bandwidth, plus tensor-parallel all-reduces over the intra-node link and fixed per-step and
  per-sequence costs. MoE weight traffic follows the tokens in the step (one token reads 4 of 128
  experts per layer, a few hundred read all), so decode is bandwidth/overhead-bound. Prefill runs
  long prompts in chunks that share steps under load: a lone prompt rereads every expert per chunk
  (bandwidth-bound: MI300X's 5.3 TB/s wins), a full step amortises the reads (compute-bound).
  Sustained compute scales with the square root of on-chip memory per compute unit (GEMM tile size),
  which is how the H100's larger L1/shared memory wins there.
- **KV transfer** (:mod:`.kvpath`): bytes from the model's KV layout (hybrid manager aware), moved
  as vLLM 0.32 moves them: on the host-staged path a per-GPU save (device->host), the NICs at the
  inventory's line rate, and a per-GPU load (host->device), one after the other; GPUDirect is the
  NIC stage alone. The path follows the inventory's ``kv.buffer`` rule (host memory across vendors).
- **Queueing** (:mod:`.queueing`): the benchmark's closed loop of C clients through prefill queues,
  the decode-side link and the batched decode station, solved by approximate mean value analysis;
  the decode batch, and with it ITL, grows with concurrency.
- **Decode-side costs of the transfer**: synchronous loads stall decode in proportion to their rate
  (computed); the report's "KV bursts" slow decode as a factor of the resident KV, whose constants
  are fitted per path to the report's tables (the mechanism is the report's claim).

What it does not model: prefix caching (off in the report), preemption and KV-capacity limits,
speculative decoding, network contention between pairs beyond one queue per decode link, host-staged
transfers of many small-TP instances sharing one host's memory bandwidth, and software differences
between vendors' engines. Every fitted constant lives in :mod:`.calibration` with its source; the
prefill efficiencies (~2% of peak) are fitted to the report's engine, and `xpdctl bench` measurements
correct TTFT and ITL per prefill and decode side for yours (:mod:`.measured`).

How close it comes: leave-one-scenario-out cross-validation against the report (:mod:`.crossval`,
benchmarks/perfmodel_crossval.py, the table in docs/performance.md); ``advise`` prints its held-out
error as a band around each prediction.
"""
