"""``xpdctl check``: validate an inventory and explain the KV path of every prefill->decode pair."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option, table


def _side_json(side) -> dict:
    return {"host": side.host, "vendor": side.vendor.name, "tensor_parallel": side.tensor_parallel,
            "block_size": side.block_size, "vllm_version": side.vllm_version,
            "nixl_module": side.nixl.module if side.nixl else None,
            "nixl_build": side.nixl.build if side.nixl else None}


def _pair_json(pair) -> dict:
    return {
        "prefill": _side_json(pair.prefill),
        "decode": _side_json(pair.decode),
        "cross_vendor": pair.cross_vendor,
        "kv_buffer_device": pair.kv_buffer_device,
        "attention_backend": pair.attention_backend,
        "attention_backend_forced": pair.backend_forced,
        "kv_cache_dtype": pair.kv_cache_dtype,
        "transfer_mode": pair.transfer_mode,
        "vllm_handshake_check": pair.handshake_check,
        "handshake_factors": [{"factor": c.factor, "prefill": c.prefill, "decode": c.decode, "ok": c.ok,
                               "how": c.how} for c in pair.handshake],
        "ok": pair.ok,
        "why": pair.reasons,
    }  # fmt: skip


def _against(loaded, found: dict | None) -> list[str]:
    """What this inventory asks of the recorded stacks (xpdctl.identity.record.against)."""
    from xpdctl.identity.record import against
    from xpdctl.plan import build_plan

    return against(build_plan(loaded, {}), found) if found else []


def _recorded(cluster: str) -> dict | None:
    from xpdctl.identity.record import recorded
    from xpdctl.paths import state_root

    path = state_root() / cluster
    return recorded(path) if path.is_dir() else None


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@output_option
def command(inventory: Path, output: str) -> None:
    """Validate INVENTORY and explain, for every prefill->decode host pair, how KV moves and why.

    Problems are printed one per line as `file.yaml:LINE: field: what is wrong; what to do`, all of
    them at once; the exit status is then 2. A valid inventory exits 0. Warnings (allowed, probably
    not meant: e.g. a router open to every client beyond loopback) go to stderr, same form, exit 0.

    \b
    Examples:
      xpdctl check -i inventory/lab.yaml            # H100 prefill -> MI300X decode
      xpdctl check -i inventory/lab.yaml -o json    # decisions for scripts
    """  # fmt: skip
    from xpdctl.errors import InputError
    from xpdctl.inventory import load_inventory
    from xpdctl.plan import build_plan

    try:
        loaded = load_inventory(inventory)
    except InputError as exc:
        if output == "json":  # scripts get the problems on stdout too; people still read stderr
            emit_json({"inventory": str(inventory), "valid": False, "problems": exc.details or [exc.message]})
        raise
    decision = loaded.kv
    found = _recorded(loaded.inventory.cluster)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    # Secrets play no part in a check: plan without them.
    instances = [
        {"name": s.name, "role": s.role, "host": s.host, "port": s.port, **s.details}
        for s in build_plan(loaded, {}).engines
    ]
    if output == "json":
        emit_json({
            "inventory": str(inventory),
            "cluster": loaded.inventory.cluster,
            "valid": True,
            "warnings": loaded.warnings,
            "cluster_settings": {
                "kv_buffer": decision.settings.buffer,
                "attention_backend_forced": decision.settings.forced_backend,
                "kv_cache_dtype": decision.settings.kv_cache_dtype,
                "hybrid_kv_cache_manager": decision.settings.hybrid_kv_cache_manager,
                "vllm_handshake_check": decision.settings.handshake_check,
                "why": list(decision.settings.reasons),
            },
            "instances": instances,
            "pairs": [_pair_json(p) for p in decision.pairs],
            "recorded_engine_stacks": found,
            "recorded_engine_stacks_against_inventory": _against(loaded, found),
        })  # fmt: skip
        return
    click.echo(f"{inventory}: valid; cluster {loaded.inventory.cluster}")
    for reason in decision.settings.reasons:
        click.echo(f"  cluster: {reason}")
    click.echo()
    click.echo(table(
        ["instance", "host", "gpus", "port", "side channel", "generation"],
        [(i["name"], i["host"], ",".join(map(str, i["gpus"])), i["port"], i["side_channel_port"], i["generation"])
         for i in instances],
    ))  # fmt: skip
    click.echo()
    rows = [
        (
            f"{p.prefill.host} ({p.prefill.vendor.name}, TP{p.prefill.tensor_parallel})",
            f"{p.decode.host} ({p.decode.vendor.name}, TP{p.decode.tensor_parallel})",
            "/".join(dict.fromkeys(p.kv_buffer_device.values())),
            p.attention_backend + (" (forced)" if p.backend_forced else ""),
            p.kv_cache_dtype,
            p.transfer_mode,
        )
        for p in decision.pairs
    ]
    click.echo(table(["prefill", "decode", "kv buffer", "attention backend", "kv dtype", "transfer"], rows))
    if found:
        from xpdctl.identity.record import describe

        click.echo("\n" + "\n".join(describe(found, "engine stacks as `up` or `upgrade` read them")))
        for line in _against(loaded, found):
            click.echo(f"  against this inventory: {line}")
    for p in decision.pairs:
        click.echo(f"\n{p.prefill.host} -> {p.decode.host}: why")
        for reason in p.reasons:  # indented reasons detail the one before (handshake factors)
            click.echo(f"      {reason.strip()}" if reason.startswith("  ") else f"  - {reason}")
