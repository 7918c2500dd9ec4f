"""`xpdctl sim`: run a vLLM-compatible simulator engine (no model, no GPU)."""

from __future__ import annotations

import click

from xpdctl.errors import InputError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--role", type=click.Choice(["prefill", "decode", "both"]), default="both",
              help="prefill = KV producer, decode = KV consumer, both = aggregated instance.")
@click.option("--model", required=True, help="Model name the instance serves (clients must send exactly this).")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8000, help="0 picks a free port; the bound URL is printed on stdout.")
@click.option("--ttft-ms", type=float, default=20.0, help="Time to first token of a prompt computed here.")
@click.option("--itl-ms", type=float, default=10.0, help="Time between generated tokens.")
@click.option("--prefill-ms-per-token", type=float, default=0.0, help="Extra prefill time per prompt token.")
@click.option("--kv-pull-ms", type=float, default=1.0, help="Decode's time to first token when the KV came from a prefill.")
@click.option("--profile", default=None, help="Hardware profile (H100-SXM, MI300X): time prefill, KV pull and decode with "
              "xpdctl's performance model instead of --ttft-ms/--itl-ms/--prefill-ms-per-token/--kv-pull-ms.")
@click.option("--profile-tp", type=int, default=8, help="With --profile: tensor-parallel size of the simulated instance.")
@click.option("--model-spec", default="gpt-oss-120b", help="With --profile: the model shape whose work is timed.")
@click.option("--kv-path", type=click.Choice(["host", "device"]), default="host",
              help="With --profile: how KV reaches this instance (host-staged, or GPUDirect with its decode congestion).")
@click.option("--time-scale", type=float, default=1.0, help="With --profile: multiply every duration (0.1 = ten times faster).")
@click.option("--max-num-seqs", type=int, default=256, help="Requests running at once; the rest wait (vllm:num_requests_waiting).")
@click.option("--max-model-len", type=int, default=4096)
@click.option("--side-channel-port", type=int, default=None,
              help="Port of the simulated NIXL side channel [default: $VLLM_NIXL_SIDE_CHANNEL_PORT, else the HTTP port].")
@click.option("--kv-lease-s", type=float, default=None,
              help="Seconds a prefill keeps unpulled KV [default: $VLLM_NIXL_ABORT_REQUEST_TIMEOUT, else 480].")
@click.option("--timestamps", is_flag=True, help="Add arrival and token times (time.monotonic(), CLOCK_MONOTONIC) to answers "
              "under `xpd_sim_timestamps`, for benchmarks that subtract the engines' own time (docs/router.md).")
@click.option("--fail-status", type=int, default=None, help="Fault: answer every generate request with this HTTP status.")
@click.option("--fail-after-tokens", type=int, default=None, help="Fault: drop the connection after this many tokens.")
@click.option("--first-byte-delay-ms", type=float, default=0.0, help="Fault: hold each response this long first.")
@click.option("--health-status", type=int, default=200, help="Fault: status of GET /health.")
@click.option("--prefix-caching", is_flag=True, help="vLLM's prefix caching: cached prompt blocks are not computed "
              "again (needs --tokenizer).")
@click.option("--tokenizer", default=None, help="The model's folder (tokenizer files): prompts are tokenized with it, as "
              "the router does, so block hashes match.")
@click.option("--kv-events-port", type=int, default=None, help="With --prefix-caching: publish vLLM's KV events on "
              "tcp://HOST:PORT (0: a free port), for the router's prefix index.")
@click.option("--block-size", type=int, default=16, help="Tokens per KV block (prefix cache, KV leases).")
@click.option("--num-gpu-blocks", type=int, default=8192, help="KV blocks of the instance (prefix cache capacity).")
@click.option("--serial-prefill", is_flag=True, help="Compute one prompt at a time (--prefill-ms-per-token each token "
              "not cached): prefills queue as on a real engine.")
def command(**opts) -> None:
    """Run a simulator engine with vLLM's endpoints, metric names and kv_transfer_params contract.

    Text is deterministic (a function of the prompt), so a prefill+decode pair gives the same text as
    a `--role both` instance. A decode refuses kv_transfer_params that do not name a live KV lease of
    the prefill instance they point to. Faults can also be changed at runtime:

    \b
      xpdctl sim --role prefill --model tiny --port 8100 &
      xpdctl sim --role decode  --model tiny --port 8200 --itl-ms 5 &
      curl -X POST localhost:8200/sim/faults -d '{"fail_after_tokens": 3, "times": 1}'
      curl localhost:8200/sim/requests      # what each request did (X-Request-Id, body, outcome)

    A simulated heterogeneous cluster (timing from the performance model of each device):

    \b
      xpdctl sim --role prefill --model m --port 8100 --profile H100-SXM &
      xpdctl sim --role decode  --model m --port 8200 --profile MI300X --kv-path host &

    Prefix caching with vLLM's KV events, for the router's prefix index at scale:

    \b
      xpdctl sim --role prefill --model m --port 8100 --prefix-caching \\
        --tokenizer ~/.cache/xpdctl/models/tiny-gpt-oss --kv-events-port 5700 --prefill-ms-per-token 0.05 --serial-prefill

    Same flags: `python -m xpdctl.sim ...`. The /sim/* endpoints have no authentication: bind the
    simulator to loopback or a test network.
    """
    from pydantic import ValidationError

    from xpdctl.sim.config import Faults, SimConfig
    from xpdctl.sim.server import serve

    fault_keys = ("fail_status", "fail_after_tokens", "first_byte_delay_ms", "health_status")
    faults = {k: opts.pop(k) for k in fault_keys}
    for key in ("side_channel_port", "kv_lease_s", "kv_events_port", "tokenizer"):
        if opts[key] is None:
            opts.pop(key)
    try:
        config = SimConfig(faults=Faults(**faults), **opts)
    except ValidationError as exc:
        raise InputError(f"invalid simulator options: {exc}") from exc
    serve(config)
