"""A vLLM-compatible simulator engine: the same HTTP endpoints, metric names and ``kv_transfer_params``
contract as a vLLM instance with NixlConnector, with no model and no GPU.

It serves the router's tests, benchmarks and the multi-host test hosts. Text is deterministic (a
function of the prompt), timing comes from :mod:`xpdctl.sim.timing`, and faults can be injected at
runtime through ``/sim/faults``.
"""
