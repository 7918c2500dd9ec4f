"""`xpdctl bench --simulate` end to end: the shipped lab inventories (H100 prefill -> MI300X decode over
host memory; MI300X -> MI300X over GPUDirect) run here as simulator engines timed by their hardware
profiles behind our router on loopback. No GPU exists here, so the simulator is the lowest layer that can
stand in for the engines; everything above it (router, client, metrics, tables, plots) is the real code.
The report's comparison on a small grid; tables and plots checked against the JSON."""

from __future__ import annotations

import json
from pathlib import Path
import re

import pytest

from click.testing import CliRunner

from xpdctl.bench.simcluster import SimulatedCluster
from xpdctl.cli import cli
from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir

CROSS = str(data_dir("inventory") / "lab.yaml")
SINGLE = str(data_dir("inventory") / "lab-single-vendor.yaml")
SIM = ["--simulate", "--time-scale", "0.2"]
GRID = ["--isl", "128,1024", "--osl", "32", "--concurrency", "1,4", "--warmups", "1", *SIM]


def _md_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """Markdown tables in order, with the heading above each: [(heading, body rows)]."""
    tables, heading, current = [], None, None
    for line in text.splitlines():
        if line.startswith("#"):
            heading, current = line.lstrip("# ").strip(), None
        elif line.startswith("|"):
            if current is None:  # the header row opens a table
                current = []
                tables.append((heading, current))
            elif not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            current = None
    return tables


def test_bench_compares_two_simulated_clusters_and_tables_match_json(tmp_path):
    res = CliRunner().invoke(cli, ["bench", "-i", CROSS, "--compare", SINGLE, *GRID, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (folder,) = tmp_path.iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}-lab", folder.name)
    for png in ("e2el.png", "tps.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in data["runs"]] == ["lab", "lab-single"]
    assert data["runs"][0]["deployment"]["prefill"]["hardware"] == "H100-SXM"
    assert data["runs"][1]["deployment"]["kv_path"] == "device"
    for run in data["runs"]:
        assert len(run["points"]) == 4
        for p in run["points"]:
            m = p["metrics"]
            assert m["completed"] == p["num_prompts"] == 4 * p["concurrency"] and m["failed"] == 0 and p["errors"] == {}
            # Exact lengths: the simulator counts each generated word as one prompt token.
            assert m["total_input_tokens"] == p["isl"] * p["num_prompts"]
            assert m["total_output_tokens"] == p["osl"] * p["num_prompts"]
            assert m["median_ttft_ms"] > 0 and m["median_tpot_ms"] > 0

    tables = _md_tables((folder / "report.md").read_text())
    comparison = data["comparison"]
    assert (comparison["first"], comparison["second"]) == ("lab", "lab-single")
    seen = 0
    for sc in comparison["scenarios"]:
        heading = f"ISL {sc['isl']} / OSL {sc['osl']}"
        rows = [t for h, t in tables if h == heading]
        compare_rows = rows[-1]  # per-run tables come first, the comparison table last
        for row, cells in zip(sc["rows"], compare_rows):
            assert cells == [str(row["concurrency"]), f"{row['first_e2el_s']:.2f}", f"{row['second_e2el_s']:.2f}",
                             f"{row['e2el_ratio']:.2f}×", f"{row['first_tps']:,}", f"{row['second_tps']:,}",
                             f"{row['tps_ratio']:.2f}×"]
            seen += 1
        assert compare_rows[-1][0] == "Geomean" and compare_rows[-1][3] == f"{sc['geomean']['e2el_ratio']:.2f}×"
    assert seen == 4
    assert dict(tables)["Geomean per scenario"][-1] == ["All", f"{comparison['geomean']['e2el_ratio']:.2f}×",
                                                  f"{comparison['geomean']['tps_ratio']:.2f}×"]
    # Each run's own table shows its points' medians.
    lab_rows = [t for h, t in tables if h == "ISL 128 / OSL 32"][0]
    first = data["runs"][0]["points"][0]
    assert lab_rows[0][:3] == ["1", f"{first['metrics']['median_e2el_ms'] / 1000:.2f}",
                               f"{first['metrics']['total_token_throughput']:,.0f}"]


def test_simulated_results_say_so_and_advise_does_not_count_them(tmp_path):
    """Simulated numbers come from the performance model itself: results.json and report.md name the
    simulator and its time scale, and advise leaves them out with a note instead of correcting by them."""
    out = tmp_path / "results"
    res = CliRunner().invoke(cli, ["bench", "-i", CROSS, "--isl", "256", "--osl", "16", "--concurrency", "2",
                                   "--warmups", "1", *SIM, "--out", str(out), "-o", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    folder = Path(data["folder"])
    run = data["runs"][0]
    assert run["engine"] == "simulator" and run["time_scale"] == float(SIM[SIM.index("--time-scale") + 1])
    assert "simulated by xpdctl sim (performance model, time scale" in (folder / "report.md").read_text()
    adv = CliRunner().invoke(cli, ["advise", "-i", CROSS, "-w", "isl=8K,osl=1K,c=8", "--measured", str(folder), "-o", "json"])
    assert adv.exit_code == 0, adv.output
    advice = json.loads(adv.stdout)
    assert any("is simulated (xpdctl sim" in n and "not a measurement, not used" in n for n in advice["notes"])
    assert not any(n.startswith("bench:") for n in advice["notes"])
    assert all(not r["predictions"][0]["corrected_by_bench"] for r in advice["ranked"])


def test_compare_with_an_earlier_results_folder(tmp_path):
    small = ["--isl", "64", "--osl", "8", "--concurrency", "2", "--warmups", "0", *SIM]
    before = CliRunner().invoke(cli, ["bench", "-i", SINGLE, *small, "--out", str(tmp_path / "a"), "-o", "json"])
    assert before.exit_code == 0, before.output
    earlier = json.loads(before.stdout)["folder"]
    res = CliRunner().invoke(cli, ["bench", "-i", CROSS, *small, "--compare", earlier, "--out", str(tmp_path / "b"),
                                   "-o", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["label"] for r in data["runs"]] == ["lab", "lab-single"]
    (row,) = data["comparison"]["scenarios"][0]["rows"]
    assert row["concurrency"] == 2 and row["e2el_ratio"] > 0


def test_simulated_cluster_has_one_engine_per_pool_instance(lab_data, write_inventory):
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    lab_data["pools"]["decode"]["tensor_parallel"] = 4
    inv = load_inventory(write_inventory(lab_data)).inventory
    with SimulatedCluster(inv, time_scale=0.1) as cluster:
        engines = sorted((e["role"], e["profile"], e["tp"], e["kv_path"]) for e in cluster.engines)
        assert engines == [("decode", "MI300X", 4, "host")] * 2 + [("prefill", "H100-SXM", 4, "host")] * 2
        assert cluster.url.startswith("http://127.0.0.1:")
        procs = list(cluster._procs)
        assert len(procs) == 5 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)  # every process it started is gone


def test_only_profiled_hosts_can_be_simulated():
    inv = load_inventory(data_dir("inventory") / "local.yaml").inventory  # CPU cores: no GPU profile
    with pytest.raises(InputError, match="performance profile"), SimulatedCluster(inv):
        pass
