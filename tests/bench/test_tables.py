"""Comparison numbers (ratios, geomeans) and the markdown they print, from constructed results."""

from __future__ import annotations

import math

import pytest

from xpdctl.bench import tables
from xpdctl.bench.results import REPORT_GRID, Point, Run, Settings, load, new_results, product_grid, result_folder, save
from xpdctl.bench.runner import arrival_offsets
from xpdctl.errors import InputError

SETTINGS = Settings(grid=product_grid([1024], [1024, 8192], [1, 8]), prompts_per_concurrency=4, request_rate=8.0,
                    warmups=2, seed=0)


def _run(label: str, e2el: dict, tps: dict) -> Run:
    points = [Point(isl=1024, osl=o, concurrency=c, num_prompts=4 * c, request_rate=8.0, backend="builtin",
                    metrics={"completed": 4 * c, "median_e2el_ms": e2el[o, c] * 1000, "total_token_throughput": tps[o, c],
                             "median_ttft_ms": 10.0, "median_tpot_ms": 5.0})
              for o in (1024, 8192) for c in (1, 8)]
    return Run(label=label, url="http://x", model="m", points=points)


def test_ratios_and_geomeans_as_the_report_computes_them():
    a = _run("cross", {(1024, 1): 5.0, (1024, 8): 8.0, (8192, 1): 40.0, (8192, 8): 50.0},
             {(1024, 1): 400, (1024, 8): 2000, (8192, 1): 200, (8192, 8): 1500})
    b = _run("single", {(1024, 1): 5.0, (1024, 8): 10.0, (8192, 1): 40.0, (8192, 8): 100.0},
             {(1024, 1): 400, (1024, 8): 1600, (8192, 1): 200, (8192, 8): 750})
    results = new_results(SETTINGS, [a, b])
    cmp = tables.compare(results, a, b)
    first, second = cmp["scenarios"]
    assert [r["e2el_ratio"] for r in first["rows"]] == [1.0, 0.8]
    assert [r["tps_ratio"] for r in second["rows"]] == [1.0, 2.0]
    assert first["geomean"]["e2el_ratio"] == round(math.sqrt(0.8), 2)
    assert cmp["geomean"]["e2el_ratio"] == round((1.0 * 0.8 * 1.0 * 0.5) ** 0.25, 2)
    results.comparison = cmp
    md = tables.markdown(results)
    assert "| 8 | 8.00 | 10.00 | 0.80× | 2,000 | 1,600 | 1.25× |" in md
    assert "| 1K/8K | 0.71× | 1.41× |" in md
    assert "E2EL ratio below 1.0 and TPS ratio above 1.0 favour cross" in md


def test_missing_points_are_left_out_of_the_comparison():
    a = _run("a", dict.fromkeys([(1024, 1), (1024, 8), (8192, 1), (8192, 8)], 1.0), dict.fromkeys([(1024, 1), (1024, 8), (8192, 1), (8192, 8)], 10))
    b = a.model_copy(update={"label": "b", "points": a.points[:1]})
    cmp = tables.compare(new_results(SETTINGS, [a, b]), a, b)
    assert [len(s["rows"]) for s in cmp["scenarios"]] == [1, 0]
    assert cmp["scenarios"][1]["geomean"] == {"e2el_ratio": None, "tps_ratio": None}


def test_results_round_trip_and_folders_are_unique(tmp_path):
    run = _run("x", dict.fromkeys([(1024, 1), (1024, 8), (8192, 1), (8192, 8)], 2.0), dict.fromkeys([(1024, 1), (1024, 8), (8192, 1), (8192, 8)], 5))
    first, second = result_folder(tmp_path, "lab/x"), result_folder(tmp_path, "lab/x")
    assert first != second and first.name.endswith("lab-x")
    save(new_results(SETTINGS, [run]), first)
    assert load(first).runs[0].points[0].e2el_s == 2.0
    (second / "results.json").write_text("{}")
    with pytest.raises(InputError, match="not a results file"):
        load(second)


def test_arrivals_follow_the_request_rate():
    offsets = arrival_offsets(32, 8.0, seed=1)
    assert offsets == sorted(offsets)
    assert offsets[-1] == pytest.approx(32 / 8.0)  # rescaled like vllm bench serve
    assert arrival_offsets(5, math.inf, seed=1) == [0.0] * 5


def test_the_report_grid_extends_8k_1k_to_256():
    settings = SETTINGS.model_copy(update={"grid": REPORT_GRID})
    assert settings.scenarios() == [(1024, 1024), (1024, 8192), (8192, 1024), (8192, 8192)]
    assert settings.concurrencies(8192, 1024) == [1, 4, 8, 16, 32, 64, 128, 256]
    assert settings.concurrencies(8192, 8192) == [1, 4, 8, 16, 32]
