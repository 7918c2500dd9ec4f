"""`xpdctl router`: run the PD router (from its rendered config file, or from flags)."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.errors import InputError


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Router config (the rendered /etc/xpdctl/router.yaml). Excludes the quick-form flags.")
@click.option("--prefill", "prefills", multiple=True, metavar="URL", help="Quick form: a prefill engine's base URL (repeatable).")
@click.option("--decode", "decodes", multiple=True, metavar="URL", help="Quick form: a decode engine's base URL (repeatable).")
@click.option("--host", default=None, help="Quick form: listen address [default: 0.0.0.0].")
@click.option("--port", type=int, default=None, help="Listen port; with --config it overrides the file [default: 8000].")
@click.option("--model", default="", show_default=False,
              help="Quick form: the model name /v1/models lists [default: ask a decode engine].")
@click.option("--admin-token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Quick form: enable the admin API with the bearer token in this file.")
@click.option("--kv-agent", "kv_agents", multiple=True, metavar="URL", help="Quick form: a KV agent whose /pairs report is honoured.")
def command(config_file, prefills, decodes, host, port, model, admin_token_file, kv_agents) -> None:
    """Run the OpenAI-compatible prefill/decode router.

    Each request goes to a prefill engine (max_tokens 1, kv_transfer_params.do_remote_decode), then
    to a decode engine with the KV parameters the prefill returned; the decode's answer (SSE bytes
    as they come) goes back to the client. Endpoints: /v1/completions, /v1/chat/completions,
    /v1/models, /health, /metrics, and /admin/* when a token is configured.

    \b
    As the rendered unit runs it:
      xpdctl router --config /etc/xpdctl/router.yaml
    Quick form, against running vLLM (or `xpdctl sim`) engines:
      xpdctl router --prefill http://10.0.0.1:8100 --decode http://10.0.0.2:8200 --port 8000
    Then:
      curl localhost:8000/v1/completions -d '{"model": "M", "prompt": "Hi", "max_tokens": 8}'
      curl -H "Authorization: Bearer $(cat token)" localhost:8000/admin/backends
    Reload the config file without dropping a request (every field; --port still overrides it):
      systemctl reload xpd-<cluster>-router      # or: kill -HUP <router pid>
    """
    from pydantic import ValidationError

    from xpdctl.router.config import RouterConfig
    from xpdctl.router.reload import read
    from xpdctl.router.server import serve

    quick = bool(prefills or decodes or host or model or admin_token_file or kv_agents)
    if config_file and quick:
        raise InputError("use either --config FILE or the quick-form flags (--prefill/--decode/...), not both")
    if config_file:
        loaded = read(config_file, port)
        serve(loaded.config, port, config_file, loaded.sha256)
        return
    if not prefills or not decodes:
        raise InputError("give --config FILE, or at least one --prefill URL and one --decode URL")
    backends = [{"url": u, "pool": "prefill"} for u in prefills] + [{"url": u, "pool": "decode"} for u in decodes]
    document = {"model": model, "backends": backends, "kv_agents": list(kv_agents),
                "listen": {"host": host or "0.0.0.0", "port": 8000 if port is None else port},
                "admin": {"token_file": admin_token_file}}
    try:
        config = RouterConfig.model_validate(document)
    except ValidationError as exc:
        raise InputError(f"invalid router flags: {exc}") from exc
    serve(config, port)
