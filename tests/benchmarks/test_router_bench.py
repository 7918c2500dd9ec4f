"""Smoke test of benchmarks/router_bench.py: tiny numbers, real processes (two simulator engines,
`xpdctl router`, `vllm-router`), and the shape of what it prints. No timing is asserted: the numbers
belong to the benchmark, not to a test on a shared machine."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "router_bench.py"
MODES = ("direct", "router", "vllm-router")
LATENCIES = ("ttft_p50", "ttft_p99", "e2el_p50", "e2el_p99")
HOPS = ("client_to_prefill", "prefill_to_decode", "decode_to_client_first", "decode_to_client_last")
TARGETS = ("added TTFT p50 <= 1 ms", "added TTFT p99 <= 5 ms", "added E2EL p50 <= 1 ms", "added E2EL p99 <= 5 ms",
           "throughput >= 0.98 x direct", "throughput >= 1 x vllm-router", "no failed requests")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not (Path(sys.executable).parent / "vllm-router").exists() and not shutil.which("vllm-router"):
        pytest.fail("vllm-router is not installed: `pip install -e .[test]` brings it")
    out = tmp_path_factory.mktemp("router-bench")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--concurrency", "1,3", "--requests-per-level", "3", "--tokens", "3",
         "--ttft-ms", "1", "--itl-ms", "1", "--rounds", "1", "--json", str(out / "result.json"), "--logs", str(out / "logs")],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    return proc, json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None


def _rows(stdout: str, table: int = 0) -> tuple[list[str], list[list[str]]]:
    """Header words and rows of the ``table``-th table that starts with a CONC column."""
    lines = stdout.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("CONC")][table]
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return header, rows


def test_exit_status_says_whether_every_target_was_met_and_one_row_per_mode_and_level(run):
    proc, result = run
    missed = [t["target"] for t in result["targets"] if t["pass"] is False]
    assert proc.returncode == (1 if missed else 0), (missed, proc.stderr[-3000:])
    header, rows = _rows(proc.stdout)
    assert header[:4] == ["CONC", "MODE", "OK", "FAIL"]
    assert "CPU" in header
    assert [(r[0], r[1]) for r in rows] == [(c, m) for c in ("1", "3") for m in MODES]
    assert all(r[2] == "3" and r[3] == "0" for r in rows), proc.stdout


def test_header_names_pinning_and_load_average(run):
    proc, _ = run
    assert "load average (1/5/15 min) at start" in proc.stdout
    assert "routers on CPU" in proc.stdout or "not pinned" in proc.stdout


def test_targets_are_marked_for_our_router_at_the_highest_concurrency(run):
    proc, data = run
    section = proc.stdout.split("Targets, xpdctl router at 3 streams:", 1)[1].strip().splitlines()
    assert section[0].split() == ["TARGET", "MEASURED", "UNPAIRED", "RESULT"]
    marked = {line.rsplit(None, 1)[0].split("  ")[0].strip(): line.rsplit(None, 1)[1] for line in section[1:]}
    assert set(marked) == set(TARGETS)
    assert set(marked.values()) <= {"PASS", "FAIL"}
    assert marked["no failed requests"] == "PASS"
    assert [t["target"] for t in data["targets"]] == list(TARGETS)


def test_json_rows_carry_added_latency_and_ratios(run):
    _, data = run
    by = {(r["concurrency"], r["mode"]): r for r in data["rows"]}
    assert set(by) == {(c, m) for c in (1, 3) for m in MODES}
    direct, ours, theirs = by[(3, "direct")], by[(3, "router")], by[(3, "vllm-router")]
    assert direct["added_ttft_p50_ms"] is None and direct["x_direct"] == 1.0
    assert ours["added_e2el_p99_ms"] == pytest.approx(ours["e2el_p99_ms"] - direct["e2el_p99_ms"])
    assert ours["x_vllm_router"] == pytest.approx(ours["output_tok_s"] / theirs["output_tok_s"])
    assert ours["router_cpu_ms_per_req"] is not None and direct["router_cpu_ms_per_req"] is None
    assert all(r["output_tok_s"] > 0 for r in data["rows"])


def test_paired_and_unpaired_added_latency_are_printed_side_by_side(run):
    proc, _ = run
    header, rows = _rows(proc.stdout, table=1)
    assert " ".join(header) == ("CONC MODE PAIRED +TTFT P50 PAIRED +TTFT P99 PAIRED +E2EL P50 PAIRED +E2EL P99 "
                                "UNPAIRED +TTFT P50 UNPAIRED +TTFT P99 UNPAIRED +E2EL P50 UNPAIRED +E2EL P99")
    assert [(r[0], r[1]) for r in rows] == [(c, m) for c in ("1", "3") for m in MODES if m != "direct"]
    assert all(len(r) == 10 and all(math.isfinite(float(x)) for x in r[2:]) for r in rows), proc.stdout


def test_hop_breakdown_covers_every_request_of_every_mode(run):
    proc, _ = run
    header, rows = _rows(proc.stdout, table=2)
    assert " ".join(header) == ("CONC MODE PAIRED IN P50 IN P99 MID P50 MID P99 OUT1 P50 OUT1 P99 OUTN P50 OUTN P99 "
                                "OVH TTFT P50 OVH TTFT P99 OVH E2EL P50 OVH E2EL P99")
    assert [(r[0], r[1], r[2]) for r in rows] == [(c, m, "3") for c in ("1", "3") for m in MODES]
    assert all(len(r) == 15 and all(math.isfinite(float(x)) for x in r[3:]) for r in rows), proc.stdout


def test_json_paired_overhead_is_the_sum_of_causal_hops(run):
    """The engines stamp with the client's clock, so every hop is >= 0 (a request cannot arrive before
    it was sent); a negative hop would mean the clocks or the stamps' route are wrong."""
    _, data = run
    by = {(r["concurrency"], r["mode"]): r for r in data["rows"]}
    for r in data["rows"]:
        assert r["paired"] == r["requests"]
        assert all(math.isfinite(r[f"overhead_{k}_ms"]) for k in LATENCIES)
        assert set(r["hops_ms"]) == set(HOPS)
        assert all(0.0 <= r["hops_ms"][hop]["p50"] <= r["hops_ms"][hop]["p99"] for hop in HOPS), r["hops_ms"]
    direct, ours = by[(3, "direct")], by[(3, "router")]
    assert direct["paired_added_ttft_p50_ms"] is None
    assert ours["paired_added_e2el_p99_ms"] == pytest.approx(ours["overhead_e2el_p99_ms"] - direct["overhead_e2el_p99_ms"])
    judged = {t["target"]: t for t in data["targets"]}
    assert judged["added TTFT p50 <= 1 ms"]["measured"] == pytest.approx(ours["paired_added_ttft_p50_ms"])
    assert judged["added TTFT p50 <= 1 ms"]["unpaired"] == pytest.approx(ours["added_ttft_p50_ms"])


def _sessions_of_children(pid: int) -> set[int]:
    sessions = set()
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if int(fields[1]) == pid:  # ppid
            sessions.add(int(fields[3]))  # session id
    return sessions


def _alive_in(sessions: set[int]) -> list[int]:
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if int(fields[3]) in sessions and fields[0] != "Z":
            alive.append(int(proc.name))
    return alive


def test_a_terminated_benchmark_stops_everything_it_started(tmp_path):
    """SIGTERM (a shell's timeout, a CI runner) in the middle of a run: the engines and the router, each
    in a session of its own, are stopped before the benchmark exits."""
    bench = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--modes", "direct,router", "--concurrency", "2",
         "--requests-per-level", "100000", "--tokens", "3", "--ttft-ms", "1", "--itl-ms", "1", "--rounds", "1",
         "--logs", str(tmp_path / "logs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
    try:
        sessions: set[int] = set()
        deadline = time.monotonic() + 120
        while len(sessions) < 3 and time.monotonic() < deadline and bench.poll() is None:
            sessions |= _sessions_of_children(bench.pid) - {os.getsid(bench.pid)}
            time.sleep(0.2)
        assert len(sessions) == 3, f"expected 2 engines and a router, saw sessions {sessions}"
        time.sleep(3)  # into the load
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 128 + signal.SIGTERM
        assert _alive_in(sessions) == []
    finally:
        if bench.poll() is None:
            bench.kill()
        for pid in _alive_in(sessions):
            os.kill(pid, signal.SIGKILL)


def test_keys_and_traces_run_through_our_router_and_spans_reach_the_receiver(tmp_path):
    """--keys and --traces together: every request presents a key, and the router's spans reach the
    benchmark's OTLP receiver (exported as the router exits, before the receiver stops)."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--modes", "direct,router", "--concurrency", "2", "--requests-per-level", "4",
         "--tokens", "3", "--ttft-ms", "1", "--itl-ms", "1", "--rounds", "1", "--keys", "2", "--traces",
         "--logs", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a target missed, which 4 requests cannot settle
    assert "client keys on: 2" in proc.stdout
    exported = next(line for line in proc.stdout.splitlines() if line.startswith("spans exported"))
    batches = int(exported.split(": ")[1].split()[0])
    assert batches >= 1, exported
    assert "no failed requests" in proc.stdout and "FAIL" not in proc.stdout.split("no failed requests")[1].splitlines()[0]
