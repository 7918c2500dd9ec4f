"""The real identity of an engine stack: what its interpreter or image reports, not what the inventory says.

:func:`read_identity` runs ``probe.py`` (beside this file) with a command prefix that starts the engine's
Python: ``[engine.python]`` natively, ``["docker", "run", "--rm", "-i", "--entrypoint=python3", IMAGE]``
for an image; the script comes on stdin, so any runtime that can pipe to a Python works.
:func:`compare_pools` explains, factor by factor, whether a prefill and a decode stack can shake hands,
with the release table (:mod:`xpdctl.releases`) deciding which NIXL module each side's vLLM imports.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from xpdctl.errors import XpdError
from xpdctl.releases import UnknownRelease, nixl_interop, public_release, release

PROBE = Path(__file__).resolve().parent / "probe.py"


class NixlPackage(BaseModel):
    path: str
    distribution: str | None = None
    version: str | None = None


class Ucx(BaseModel):
    version: str
    library: str


class EngineIdentity(BaseModel):
    python: str
    vllm_version: str | None
    rocm: bool | None
    torch: str | None
    nixl: dict[str, NixlPackage | None]
    ucx: Ucx | None
    vllm_error: str | None = None
    torch_error: str | None = None
    modules: dict[str, str | None] = {}  # modules that change vLLM's choices (aiter) -> path, None: absent

    def attention_backend(self, vendor: str, forced: str | None) -> tuple[str | None, str]:
        """(backend this stack's vLLM runs, why): the forced one, else its release's default on ``vendor``."""
        if forced:
            return forced, "forced by --attention-backend"
        if self.vllm_version is None:
            return None, "no vLLM"
        try:
            default = release(self.vllm_version).attention_default.get(vendor)
        except UnknownRelease:
            return None, "vLLM release not in the table"
        if default is None:
            return None, f"vLLM {public_release(self.vllm_version)}'s default on {vendor} not read yet"
        backend, where = default.pick({m for m, path in self.modules.items() if path})
        return backend, f"vLLM's default, {where}"

    def nixl_module(self, vendor: str) -> str | None:
        """The module this stack's vLLM imports as NIXL on ``vendor`` (None: release unknown)."""
        if self.vllm_version is None:
            return None
        try:
            return release(self.vllm_version).nixl_import(vendor).module
        except UnknownRelease:
            return None

    def nixl_text(self, vendor: str, module: str | None = None) -> str:
        """What this stack imports as NIXL: ``module`` when given, else what its vLLM imports on ``vendor``."""
        module = module or self.nixl_module(vendor)
        if module is None:
            return "NIXL module unknown (vLLM release not in the table)"
        package = self.nixl.get(module)
        if package is None:
            return f"imports {module}: NOT INSTALLED"
        return f"imports {module} ({package.distribution or module} {package.version or 'version unknown'})"


_END = "XPD_IDENTITY_PROBE_END"


def probe_script(prefix: list[str]) -> str:
    """A ``sh`` script that runs the probe with the Python ``prefix`` starts (the probe on its stdin)."""
    return f"{shlex.join([*prefix, '-'])} <<'{_END}'\n{PROBE.read_text()}\n{_END}\n"


def parse_probe(rc: int | None, stdout: str, stderr: str, where: str) -> EngineIdentity:
    """The probe's JSON line, or XpdError saying why there is none (``where``: the command and host)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        status = "timed out" if rc is None else f"exit {rc}"
        raise XpdError(f"identity probe with {where} failed ({status}): {tail}")
    return EngineIdentity.model_validate(json.loads(lines[-1]))


def read_identity(prefix: list[str], timeout_s: float = 600) -> EngineIdentity:
    """Run the probe on this machine through ``prefix`` (the command that starts the engine's Python)."""
    try:
        done = subprocess.run(["sh", "-s"], input=probe_script(prefix), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return parse_probe(None, "", "", " ".join(prefix))
    return parse_probe(done.returncode, done.stdout, done.stderr, " ".join(prefix))


@dataclass(frozen=True)
class Factor:
    name: str
    prefill: str
    decode: str
    ok: bool
    why: str

    def line(self) -> str:
        values = self.prefill if self.prefill == self.decode else f"{self.prefill} vs {self.decode}"
        return f"{self.name}: {values}: {self.why}"


def _or(value: str | None, missing: str = "not found") -> str:
    return value if value else missing


def _build(package: NixlPackage) -> str:
    return f"{package.distribution or 'nixl'} {package.version or 'version unknown'}"


# What xpdctl's KV agent imports (xpdctl/kvagent/source.py, worker.py): the NIXL of a simulator stack,
# whose engines load no vLLM.
AGENT_NIXL = "nixl"


def _nixl_factor(prefill: EngineIdentity, prefill_vendor: str, decode: EngineIdentity, decode_vendor: str,
                 engines_load_vllm: bool) -> Factor:
    """Each side has the module its vLLM imports (the KV agent's, for simulator engines), and two
    different builds were measured to interoperate (``xpdctl/releases/nixl_interop.yaml``): measured
    broken is refused, not measured is allowed and said."""
    if engines_load_vllm:
        modules = (prefill.nixl_module(prefill_vendor), decode.nixl_module(decode_vendor))
    else:
        modules = (AGENT_NIXL, AGENT_NIXL)
    texts = (prefill.nixl_text(prefill_vendor, modules[0]), decode.nixl_text(decode_vendor, modules[1]))
    packages = [side.nixl.get(m) if m else None for m, side in zip(modules, (prefill, decode))]
    who = "vLLM" if engines_load_vllm else "KV agent"
    if packages[0] is None or packages[1] is None:
        return Factor("nixl", *texts, False, f"the {who} would run without NIXL: no KV transfer")
    builds = (_build(packages[0]), _build(packages[1]))
    if builds[0] == builds[1] and not nixl_interop().cells(*builds):
        return Factor("nixl", *texts, True, f"each side has the module its {who} imports, the same build")
    verdict = nixl_interop().verdict(builds, modules)  # a same-build cell measured broken refuses the pair too
    return Factor("nixl", *texts, verdict.allowed, verdict.why)


def compare_pools(prefill: EngineIdentity, prefill_vendor: str, decode: EngineIdentity,
                  decode_vendor: str, forced_backend: str | None = None, engines_load_vllm: bool = True
                  ) -> list[Factor]:
    """Per factor: equal, or whether the difference matters to the NIXL handshake. Simulator engines
    (``engines_load_vllm`` false) load no vLLM: their NIXL is the KV agent's import."""
    pv, dv = _or(prefill.vllm_version), _or(decode.vllm_version)
    factors = []
    if prefill.vllm_version is None or decode.vllm_version is None:
        factors.append(Factor("vllm", pv, dv, False, "a stack without vLLM cannot serve"))
    elif pv == dv:
        factors.append(Factor("vllm", pv, dv, True, "the same string: vLLM's own handshake check can stay on"))
    elif public_release(pv) == public_release(dv):
        factors.append(Factor("vllm", pv, dv, True, "one public release, local build suffixes differ: vLLM's "
                              "check must be off and xpdctl compares the factors (docs/kv-handshake.md)"))
    else:
        factors.append(Factor("vllm", pv, dv, False, "different releases: the NIXL handshake refuses them"))
    factors.append(_nixl_factor(prefill, prefill_vendor, decode, decode_vendor, engines_load_vllm))
    (pb, pwhy), (db, dwhy) = (prefill.attention_backend(prefill_vendor, forced_backend),
                              decode.attention_backend(decode_vendor, forced_backend))
    if pb is None or db is None:
        factors.append(Factor("attention_backend", f"{_or(pb, 'unknown')} ({pwhy})", f"{_or(db, 'unknown')} ({dwhy})",
                              False, "vLLM hashes the backend's name; set kv.attention_backend to one both run"))
    else:
        factors.append(Factor("attention_backend", f"{pb} ({pwhy})", f"{db} ({dwhy})", pb == db,
                              "hashed into the handshake: equal" if pb == db else "hashed into the handshake: the "
                              "decode refuses a different backend; set kv.attention_backend to one both run"))
    pu = prefill.ucx.version if prefill.ucx else "not found"
    du = decode.ucx.version if decode.ucx else "not found"
    factors.append(Factor("ucx", pu, du, prefill.ucx is not None and decode.ucx is not None,
                          "UCX carries the KV; differing versions are not measured against each other here"
                          if prefill.ucx and decode.ucx else "NIXL's UCX backend needs libucp"))
    factors.append(Factor("torch", _or(prefill.torch), _or(decode.torch), True,
                          "not part of the handshake; vendor builds differ by design"))
    return factors
