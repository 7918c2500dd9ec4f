"""A performance model of prefill/decode assignments: roofline per step, queueing per workload.

What it models, from the hardware table (``hardware.yaml``) and the model's shape (``models.yaml``):

- **Engine steps** (:mod:`.roofline`): FLOPs over sustained compute plus bytes over sustained
  bandwidth, plus tensor-parallel all-reduces over the intra-node link and fixed per-step and
  per-sequence costs. MoE weight traffic follows the tokens in the step (one token reads 4 of 128
  experts per layer, a few hundred read all), so decode is bandwidth/overhead-bound and long
  prefill compute-bound. Sustained compute scales with the square root of on-chip memory per
  compute unit (GEMM tile size), which is how the H100's larger L1/shared memory shows up.
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
speculative decoding, network contention between pairs beyond one queue per decode link, and
software differences between vendors' engines. Absolute TTFTs come out well below the report's
(tens of ms for an 8K prompt where the report implies hundreds): no roofline explains that gap, so
`xpdctl bench` measurements correct TTFT and ITL per prefill and decode side (:mod:`.measured`).
Every fitted constant lives in :mod:`.calibration` with its source.

How close it comes (``benchmarks/perfmodel_vs_report.py`` prints it beside the report): parity at
1K/1K, the cross-vendor lead at 8K/8K from concurrency 8 and at 1K/8K at 32, and the single-vendor
lead at 8K/1K up to concurrency 8 are reproduced; that last lead is ~1% (the host-staged transfer in
TTFT) where the report measured 8-21%, and the 8K/1K crossover comes at concurrency 16, not 32.
Host-staged transfers are not modelled as sharing one host's memory bandwidth when many instances
(small TP) pull at once.
"""
