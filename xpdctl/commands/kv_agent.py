"""``xpdctl kv-agent``: the per-host KV agent (serve) and its one-shot probe."""

from __future__ import annotations

import os
from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="kv-agent config written by `xpdctl render` (on a host: /etc/xpdctl/kv-agent.yaml).",
)


def _load(config_path: Path | None):
    from xpdctl.errors import InputError
    from xpdctl.kvagent.config import load_kv_agent_config

    if config_path is None:
        raise InputError("--config FILE is required: the kv-agent config that `xpdctl render` writes")
    config = load_kv_agent_config(config_path)
    # UCX reads its variables from the environment of the process that creates an agent: this one
    # (the NIXL source) and the probe workers it starts.
    os.environ.update(config.ucx_env)
    return config


@click.group(
    "kv-agent",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@_config_option
@click.pass_context
def command(ctx: click.Context, config_path: Path | None) -> None:
    """Check and measure every prefill->decode KV path this host takes part in.

    Without a subcommand, serve the agent (one per host, started by its unit): for each pair it
    checks that the prefill's NIXL side channel accepts TCP from the decode host, and the decode
    host's agent reads a buffer from the prefill host's agent over NIXL (UCX), verifying the bytes and
    measuring bandwidth, latency and the UCX transport used. A transport other than RDMA between two
    hosts whose inventory declares RDMA NICs is reported as a fault (UCX's silent TCP fallback).

    \b
    HTTP API:
      GET /health       200 when every pair is ok, 503 otherwise (per-pair detail)
      GET /pairs        {"pairs": [{"prefill_url", "decode_url", "ok", "reason", "transport", ...}]}
      GET /metrics      Prometheus text (xpdctl_kvagent_*)
      GET /nixl/source  NIXL metadata for peer agents

    \b
    Examples:
      xpdctl kv-agent --config /etc/xpdctl/kv-agent.yaml
      curl -s localhost:8788/pairs | jq '.pairs[] | {prefill, decode, ok, reason}'
      xpdctl kv-agent probe --config out/hosts/h100-1/etc/xpdctl/kv-agent.yaml --wait 120
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from aiohttp import web

    from xpdctl.kvagent.server import build_app

    config = _load(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(
        f"kv-agent for host {config.host}: {len(config.pairs)} pair(s), "
        f"listening on http://{config.listen_host}:{config.port}",
        err=True,
    )
    # No access log: the router polls /pairs every few seconds; verdict changes are logged instead.
    web.run_app(build_app(config), host=config.listen_host, port=config.port, print=None, access_log=None)


@command.command("probe")
@_config_option
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Keep retrying for up to this many seconds until every pair is ok (engines still starting).",
)
@output_option
def probe(config_path: Path | None, wait_s: float, output: str) -> None:
    """Probe every pair once (retrying up to --wait) and exit: status 0 when all are ok, 3 otherwise.

    Same-host pairs need nothing else running; for a pair across hosts, the agent of the other host
    must be serving (`xpdctl kv-agent --config ...` there).

    \b
    Examples:
      xpdctl kv-agent probe --config /etc/xpdctl/kv-agent.yaml
      xpdctl kv-agent probe --config kv-agent.yaml --wait 300 -o json | jq '.pairs[].bandwidth_gbps'
    """
    import asyncio

    from xpdctl.kvagent.probe import probe_pairs_async, require_ok

    config = _load(config_path)

    def progress(results) -> None:
        ok = sum(r.ok for r in results)
        click.echo(f"kv-agent probe: {ok}/{len(results)} pair(s) ok", err=True)

    results = asyncio.run(probe_pairs_async(config, wait_s=wait_s, on_round=progress))
    if output == "json":
        emit_json({"host": config.host, "pairs": [r.model_dump() for r in results]})
    else:
        click.echo(table(
            ["prefill", "decode", "state", "transport", "gbit/s", "latency ms", "reason"],
            [
                [
                    r.prefill, r.decode, r.state, r.transport or "-",
                    f"{r.bandwidth_gbps:.2f}" if r.bandwidth_gbps is not None else "-",
                    f"{r.latency_ms:.3f}" if r.latency_ms is not None else "-",
                    r.reason,
                ]
                for r in results
            ],
        ))
    require_ok(results)
