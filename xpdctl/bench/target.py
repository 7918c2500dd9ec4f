"""What to benchmark: an endpoint URL and model name, from an inventory (its router) or given directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpdctl.errors import InputError

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    model: str
    inventory: str | None = None
    deployment: dict | None = None  # perfmodel Option.signature(), when the hosts have profiles
    tokenizer: str | None = None
    engine: str = "endpoint"  # or "simulator": see bench.results.Run.engine
    time_scale: float | None = None


def local_tokenizer(path: str | None) -> str | None:
    if path and Path(path).is_dir() and any((Path(path) / f).exists() for f in _TOKENIZER_FILES):
        return path
    return None


def from_inventory(path: Path, url: str | None = None, model: str | None = None, label: str | None = None) -> Target:
    from xpdctl.inventory import load_inventory
    from xpdctl.inventory.topology import hosts_by_name
    from xpdctl.perfmodel.options import current_option

    inv = load_inventory(path).inventory
    if url is None:
        # load_inventory checked that every router host is declared; the first is the one to measure.
        scheme = "https" if inv.router.tls else "http"
        vip = inv.router.vip
        url = f"{scheme}://{vip.address if vip else hosts_by_name(inv)[inv.router.hosts[0]].address}:{inv.router.port}"
    option = current_option(inv)
    return Target(label or inv.cluster, url, model or inv.model.name, str(path),
                  option.signature() if option else None, local_tokenizer(inv.model.path))


def from_url(url: str, model: str | None, label: str | None = None) -> Target:
    if not model:
        raise InputError("--model is required with --url (the name the endpoint serves; see its /v1/models)")
    return Target(label or url.split("//", 1)[-1].rstrip("/"), url, model)
