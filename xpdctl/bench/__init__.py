"""Load generation with ``vllm bench serve``'s metric definitions over the report's grid.

- :mod:`.prompts`: random prompts of exact token lengths (vLLM's random dataset algorithm).
- :mod:`.client`: one streamed request, timed exactly as vLLM's OpenAI-completions client times it.
- :mod:`.metrics`: TTFT, TPOT, ITL, E2EL and throughput as ``vllm bench serve`` computes them.
- :mod:`.runner`: one grid point: warm-up, Poisson arrivals at the request rate, max concurrency.
- :mod:`.vllm_backend`: the same point through ``vllm bench serve`` itself, where it runs.
- :mod:`.results`, :mod:`.tables`, :mod:`.plots`: results JSON, markdown tables, PNG plots.
"""
