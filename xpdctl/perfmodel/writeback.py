"""Write a chosen option's pools back into an inventory file, keeping its comments and key order.

Only ``pools.prefill``/``pools.decode`` (hosts, tensor_parallel, instances_per_host) and
``router.conditional_disagg`` with ``router.conditional_disagg_min_prompt_tokens`` (the threshold
ranked) change; everything else is copied as written. The result is loaded with
the inventory loader before it replaces anything, so a file that would not validate is never written.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from xpdctl.errors import InputError, XpdError
from xpdctl.inventory.load import load_inventory
from xpdctl.perfmodel.options import Option, PoolChoice


def _flow_list(items) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _apply_pool(node: CommentedMap, choice: PoolChoice, gpus_per_host: int) -> None:
    node["hosts"] = _flow_list(list(choice.hosts))
    node["tensor_parallel"] = choice.tp
    # The loader's default is all GPUs (half when shared) / TP: write the count only when it differs.
    if choice.instances_per_host * choice.tp == gpus_per_host:
        node.pop("instances_per_host", None)
    else:
        node["instances_per_host"] = choice.instances_per_host


def write_option(source: Path, option: Option, dest: Path) -> None:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    try:
        data = yaml.load(source.read_text())
    except OSError as exc:
        raise InputError(f"{source}: cannot read the inventory: {exc.strerror}") from exc
    gpus = {h["name"]: (h.get("gpu") or {}).get("count", 0) for h in data.get("hosts", [])}
    shared = set(option.prefill.hosts) & set(option.decode.hosts)
    pools = data.setdefault("pools", CommentedMap())
    for role, choice in (("prefill", option.prefill), ("decode", option.decode)):
        node = pools.get(role)
        if not isinstance(node, CommentedMap):
            node = pools[role] = CommentedMap()
        host = choice.hosts[0]
        _apply_pool(node, choice, gpus.get(host, 0) // (2 if host in shared else 1))
    router = data.get("router")
    if isinstance(router, CommentedMap):
        if option.threshold is not None:
            router["conditional_disagg"] = True
            router["conditional_disagg_min_prompt_tokens"] = option.threshold
        elif "conditional_disagg" in router:
            router["conditional_disagg"] = False
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(buffer.getvalue())
        try:
            load_inventory(tmp)
        except XpdError as exc:
            raise InputError(
                f"the chosen pools do not make a valid inventory from {source}: {exc.message}; "
                "fix the inventory (e.g. add the engine image of a vendor it now uses) and run advise again",
                details=exc.details,
            ) from exc
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
