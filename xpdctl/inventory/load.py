"""Inventory file -> validated :class:`Inventory`, with every problem reported at its line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from xpdctl.errors import InputError
from xpdctl.inventory.clientkeys import HashedKey, read_keys
from xpdctl.inventory.firewall import firewall_problems
from xpdctl.inventory.problems import Problem, format_problem, raise_if_any, schema_problem
from xpdctl.inventory.routertls import TlsPair, read_tls
from xpdctl.inventory.rules import check_rules, exposure_warnings
from xpdctl.inventory.topology import router_addresses
from xpdctl.inventory.vip import vip_problems
from xpdctl.inventory.schema import Inventory
from xpdctl.inventory.yamlsource import LineMap, load_yaml
from xpdctl.inventory.kvcompat import KvDecision, decide


@dataclass
class LoadedInventory:
    inventory: Inventory
    path: Path  # as the user named it: error lines and messages quote it
    lines: LineMap
    kv: KvDecision
    client_keys: list[HashedKey] = field(default_factory=list)  # hashed; router.auth.mode keys
    own_key: str | None = None  # the client key xpdctl presents to its router (keys mode); never written out
    router_tls: TlsPair | None = None  # router.tls's files, read and checked
    warnings: list[str] = field(default_factory=list)  # `file:LINE: field: ...`, like problems; nothing refused


def _renamed_keys(data: dict) -> list[Problem]:
    """Keys of older inventories, refused with the rewrite to make rather than as unknown keys."""
    router = data.get("router")
    if isinstance(router, dict) and "host" in router and "hosts" not in router:
        return [Problem(("router", "host"), f"renamed to router.hosts, a list; write `hosts: [{router['host']}]`")]
    return []


def _resolve_paths(inv: Inventory, base: Path) -> Inventory:
    """Relative paths in the file are relative to the file, not to wherever xpdctl runs."""

    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded):
            return os.path.normpath(expanded)
        # normpath, not resolve(): a venv's python is a symlink that must stay the venv's.
        return os.path.normpath(os.path.join(os.path.abspath(base), expanded))

    engine = inv.engine.model_copy(update={"python": resolve(inv.engine.python)})
    model = inv.model.model_copy(update={"path": resolve(inv.model.path)})
    auth = inv.router.auth.model_copy(update={"keys_file": resolve(inv.router.auth.keys_file)})
    tls = inv.router.tls
    if tls is not None:
        tls = tls.model_copy(update={name: resolve(getattr(tls, name)) for name in ("cert_file", "key_file", "ca_file")})
    router = inv.router.model_copy(update={"auth": auth, "tls": tls})
    return inv.model_copy(update={"engine": engine, "model": model, "router": router})


def load_inventory(path: Path | str, *, tls_files: bool = True) -> LoadedInventory:
    """``tls_files`` False: router.tls's files are not read (``tls generate`` is about to write them)."""
    path = Path(path)
    try:
        data, lines, yaml_problems = load_yaml(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the inventory: {exc.strerror}; check the path") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{where}: not valid YAML: {problem}; fix the syntax") from exc
    problems = [Problem(p.loc, p.message, line=p.line) for p in yaml_problems]
    if not isinstance(data, dict):
        problems.append(Problem((), "the inventory must be a mapping (cluster:, model:, hosts:, ...)"))
        raise_if_any(path, lines, problems)
    # Top-level x-* keys hold YAML anchors for hosts to merge (<<: *gpu-node), as in compose files.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    problems.extend(_renamed_keys(data))
    raise_if_any(path, lines, problems)
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems.extend(schema_problem(e, Inventory) for e in exc.errors())
        raise_if_any(path, lines, problems)
        raise  # not reached: a ValidationError always carries at least one error
    inventory = _resolve_paths(inventory, path.parent)
    problems.extend(check_rules(inventory))
    kv = decide(inventory)
    problems.extend(kv.problems)
    problems.extend(firewall_problems(inventory))
    problems.extend(vip_problems(inventory))
    auth = inventory.router.auth
    keys = read_keys(Path(auth.keys_file)) if auth.mode == "keys" and auth.keys_file else None
    tls = read_tls(inventory.router.tls, router_addresses(inventory)) if inventory.router.tls and tls_files else None
    problems.extend(tls.problems if tls else [])
    raise_if_any(path, lines, problems, keys.problems if keys else [])
    warnings = [format_problem(path, lines, w) for w in [*exposure_warnings(inventory), *kv.warnings]]
    return LoadedInventory(inventory=inventory, path=path, lines=lines, kv=kv,
                           client_keys=keys.keys if keys else [], own_key=keys.own_key if keys else None,
                           router_tls=tls.pair if tls else None, warnings=warnings)
