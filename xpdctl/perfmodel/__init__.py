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
- **KV transfer** (:mod:`.kvpath`): bytes from the model's KV layout (hybrid manager aware) over
  host staging (~4 GB/s measured) or GPUDirect RDMA (NIC line rate); the path follows the
  inventory's ``kv.buffer`` rule (host memory across vendors).
- **Queueing** (:mod:`.queueing`): the benchmark's closed loop of C clients through prefill queues,
  the decode-side link and the batched decode station, solved by approximate mean value analysis;
  the decode batch, and with it ITL, grows with concurrency.
- **Decode-side congestion on the device path**: the report observes that with GPUDirect, KV bursts
  slow decode once long sequences are resident (and credits host-side buffering for avoiding it).
  We reproduce that shape with an ITL factor of the resident KV per decode instance; its two
  constants are fitted to the report's single-vendor tables, and the mechanism is the report's claim.

What it does not model: prefix caching (off in the report), preemption and KV-capacity limits,
speculative decoding, network contention between pairs beyond one queue per decode link, host-staged
transfers of many small-TP instances sharing one host's memory bandwidth, and software differences
between vendors' engines. Every fitted constant lives in :mod:`.calibration` with its source; the
prefill efficiencies (~2% of peak) are fitted to the report's engine, and `xpdctl bench` measurements
correct TTFT and ITL per prefill and decode side for yours (:mod:`.measured`).

How close it comes (``benchmarks/perfmodel_vs_report.py`` prints it beside the report): parity at
1K/1K; the cross-vendor lead at 8K/8K from concurrency 8 (0.83/0.63/0.56 against 0.79/0.57/0.66)
and at 1K/8K at 32 (0.65 against 0.71); the single-vendor lead at 8K/1K up to concurrency 8
(1.07/1.04/1.01 against 1.08/1.18/1.21), with the crossover at 16 where the report has 32; geomean
E2EL ratio over the report's grid 0.91, as in the report. TTFTs at concurrency 1 come out about
twice the report's.
"""
