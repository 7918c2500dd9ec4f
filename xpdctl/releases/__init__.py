"""What each vLLM release does at the NIXL handshake and what it accepts, as data read from its source
(``vllm.yaml`` here: the one release table).

A version string maps to its public release (PEP 440: ``0.15.0+rocm644`` is release ``0.15.0`` with a
local build suffix), and the release to the NIXL module each vendor's build imports and the factors its
handshake hashes. A release that is not in the table is an error naming what to add: guessing the
module or the factors of an unread release is how a cluster ends up without NIXL.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal
from pathlib import Path

import yaml
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import XpdError

TABLE = Path(__file__).resolve().parent / "vllm.yaml"
INTEROP = Path(__file__).resolve().parent / "nixl_interop.yaml"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceLine(_Data):
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class NixlImport(_Data):
    module: str  # what vLLM imports (nixl, rixl, nixl_rocm)
    line: int
    build: str | None  # the NIXL build xpdctl pairs with the release on this vendor; None: none pinned


class NixlImports(_Data):
    model_config = ConfigDict(extra="allow", frozen=True)  # one key per vendor
    file: str

    def for_vendor(self, vendor: str) -> NixlImport | None:
        raw = (self.model_extra or {}).get(vendor)
        return None if raw is None else NixlImport.model_validate(raw)


class ConnectorVersion(_Data):
    value: int
    line: int


class Handshake(_Data):
    file: str
    line: int  # def compute_nixl_compatibility_hash
    factors: tuple[str, ...]
    connector_version: ConnectorVersion
    switch: SourceLine  # where enforce_handshake_compat is read


class FailurePolicy(_Data):
    default: str
    line: int  # in vllm/config/kv_transfer.py


class ModuleBackend(_Data):
    backend: str
    line: int


class AttentionDefault(_Data):
    backend: str
    file: str
    line: int
    if_module: dict[str, ModuleBackend] = {}  # installed module -> the backend it puts first

    def pick(self, installed: set[str]) -> tuple[str, str]:
        """(backend, ``file:line`` it was read from) for a stack with ``installed`` selecting modules."""
        for module, chosen in self.if_module.items():
            if module in installed:
                return chosen.backend, f"{self.file}:{chosen.line} ({module} installed)"
        return self.backend, f"{self.file}:{self.line}"


class Accepted(_Data):
    source: str  # vllm/<file>:<line> <name>
    values: tuple[str, ...]


class Accepts(_Data):
    """What vLLM takes for the inventory's free-text fields (:mod:`xpdctl.releases.vllm_source`)."""

    quantization: Accepted
    dtype: Accepted
    kv_cache_dtype: Accepted
    attention_backend: Accepted


class Release(_Data):
    version: str
    nixl: NixlImports
    handshake: Handshake
    kv_load_failure_policy: FailurePolicy
    attention_default: dict[str, AttentionDefault] = {}  # vendor -> what vLLM picks unforced; {}: not read
    accepts: Accepts | None = None  # None: not read for this release yet
    # Where the prefill frees the sliding-window block a decode's recomputed last prompt token still
    # needs (docs/kv-handshake.md, "PD answers and prompt length"); None: not read for this release.
    pd_window_gap: SourceLine | None = None

    def nixl_import(self, vendor: str) -> NixlImport:
        found = self.nixl.for_vendor(vendor)
        if found is None:
            raise XpdError(
                f"{TABLE}: vLLM {self.version} has no NIXL entry for vendor {vendor}; read the release's "
                f"{self.nixl.file} (its import branch for that platform) and add one"
            )
        return found

    def source(self, what: str) -> str:
        """``file:line`` of one fact, for explanations."""
        lines = {
            "handshake": SourceLine(file=self.handshake.file, line=self.handshake.line),
            "connector_version": SourceLine(file=self.handshake.file, line=self.handshake.connector_version.line),
            "switch": self.handshake.switch,
            "failure_policy": SourceLine(file="vllm/config/kv_transfer.py", line=self.kv_load_failure_policy.line),
        }
        return f"vllm {self.version} {lines[what]}"


class UnknownRelease(XpdError):
    """A vLLM release the table does not describe."""


def public_release(version: str) -> str:
    """``0.15.0+rocm644`` -> ``0.15.0``; a string that is no PEP 440 version is its own release."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def local_suffix(version: str) -> str | None:
    try:
        return Version(version).local
    except InvalidVersion:
        return None


@cache
def releases() -> dict[str, Release]:
    try:
        raw = yaml.safe_load(TABLE.read_text())["releases"]
        return {v: Release.model_validate({"version": v, **entry}) for v, entry in raw.items()}
    except Exception as exc:  # a broken shipped file is a bug in xpdctl, not user input
        raise XpdError(f"{TABLE}: invalid release table: {exc}; fix the file or reinstall xpdctl") from exc


def release(version: str) -> Release:
    """The table entry of ``version``'s public release, or :class:`UnknownRelease` saying what to add."""
    public = public_release(version)
    found = releases().get(public)
    if found is None:
        known = ", ".join(releases())
        raise UnknownRelease(
            f"vLLM {public} is not in xpdctl's release table (known: {known}); run "
            f"`pip download vllm=={public} --no-deps`, read its NIXL import branch (vllm/distributed/nixl_utils.py "
            "or the NIXL connector) and compute_nixl_compatibility_hash, and add the release to "
            "xpdctl/releases/vllm.yaml (docs/kv-handshake.md) with the values it accepts "
            "(`python -m xpdctl.releases.vllm_source <its vllm package dir>`, docs/inventory.md)"
        )
    return found


class InteropRun(_Data):
    """One measurement of NIXL builds against each other: at which level, when, and the command."""

    level: str  # "NIXL API": the KV agent's NIXL READ; "vLLM": PD requests through vLLM's NixlConnector
    vllm: str | None = None  # the vLLM release of a vLLM-level run
    date: str
    command: str


class InteropCell(_Data):
    run: str  # a key of ``runs``
    source: str  # the prefill side's build, "nixl 1.5.1"
    reader: str  # the decode side's build
    result: Literal["ok", "broken"]
    how: str | None = None  # what was seen


class NotMeasured(_Data):
    modules: tuple[str, ...]  # NIXL modules (what vLLM imports) no cell can hold yet
    why: str


@dataclass(frozen=True)
class InteropVerdict:
    result: Literal["ok", "broken", "not measured"]
    why: str

    @property
    def allowed(self) -> bool:
        return self.result != "broken"


class Interop(_Data):
    """``nixl_interop.yaml``: the measured cells with their runs, and the builds that cannot be measured."""

    runs: dict[str, InteropRun]
    measured: tuple[InteropCell, ...]
    not_measured: tuple[NotMeasured, ...] = ()

    def cells(self, source: str, reader: str) -> list[tuple[InteropCell, InteropRun]]:
        """Every cell of ``source`` -> ``reader``, vLLM-level runs first."""
        found = [(c, self.runs[c.run]) for c in self.measured if (c.source, c.reader) == (source, reader)]
        return sorted(found, key=lambda cell_run: cell_run[1].level != "vLLM")

    def results(self, run: str) -> dict[tuple[str, str], str]:
        """(source, reader) -> "ok" | "broken" of one run."""
        return {(c.source, c.reader): c.result for c in self.measured if c.run == run}

    def why_not_measured(self, module: str) -> str | None:
        return next((n.why for n in self.not_measured if module in n.modules), None)

    def verdict(self, builds: tuple[str, str], modules: tuple[str | None, str | None]) -> InteropVerdict:
        """What the table says of a prefill build and a decode build: a cell measured broken
        refuses the pair; ok cells say at which level (vLLM's connector above the NIXL API); without a
        cell the pair is allowed, saying why it was not measured or what to run."""
        where = "(xpdctl/releases/nixl_interop.yaml)"
        cells = self.cells(*builds)
        broken = [(c, run) for c, run in cells if c.result == "broken"]
        if broken:
            cell, run = broken[0]
            seen = f": {cell.how}" if cell.how else ""
            return InteropVerdict("broken", f"{builds[0]} -> {builds[1]} was measured not to move KV at the "
                                  f"{run.level} level ({run.date}{seen}) {where}; install one build on both sides")
        if cells:
            run = cells[0][1]  # vLLM-level first
            level = (f"through vLLM {run.vllm}'s NIXL connector (vLLM level)" if run.level == "vLLM"
                     else "at the NIXL API level (the KV agent's probe, not through vLLM's connector)")
            return InteropVerdict("ok", f"{builds[0]} -> {builds[1]} measured to move KV {level}, {run.date} {where}")
        why = next(filter(None, (self.why_not_measured(m) for m in modules if m)), None)
        if why:
            return InteropVerdict("not measured", f"{builds[0]} -> {builds[1]} not measured: {why} {where}")
        return InteropVerdict("not measured", f"{builds[0]} -> {builds[1]} not measured against each other; measure "
                              "it with benchmarks/nixl_interop.py (docs/kv-handshake.md) before trusting the pair")


@cache
def nixl_interop() -> Interop:
    """The NIXL interop table (``nixl_interop.yaml``); a pair without a cell was not measured."""
    try:
        found = Interop.model_validate(yaml.safe_load(INTEROP.read_text()))
        unknown = {c.run for c in found.measured} - set(found.runs)
        if unknown:
            raise ValueError(f"cells name runs that are not described: {sorted(unknown)}")
        return found
    except Exception as exc:  # a broken shipped file is a bug in xpdctl, not user input
        raise XpdError(f"{INTEROP}: invalid NIXL interop table: {exc}; fix the file or reinstall xpdctl") from exc
