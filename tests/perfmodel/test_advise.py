"""`xpdctl advise`: options from an inventory, ranking, reasons, bench corrections, write-back."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from click.testing import CliRunner

from xpdctl.cli import cli
from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.perfmodel.advise import MODEL_ERROR, Modeller, advise
from xpdctl.perfmodel.calibration import DEFAULT, load_calibration
from xpdctl.perfmodel.measured import load_measurements
from xpdctl.perfmodel.options import current_option, enumerate_options
from xpdctl.perfmodel.specs import model_spec
from xpdctl.perfmodel.workloads import parse_workload

GPT = model_spec("gpt-oss-120b")
LAB = data_dir("inventory") / "lab.yaml"


@pytest.fixture
def lab3(lab_data, write_inventory):
    """The report's hardware in one inventory: one H100 node and two MI300X nodes (TP 8 pools as in lab.yaml)."""
    lab_data["hosts"].insert(2, {"name": "mi300x-02", "address": "10.0.0.22", "vendor": "amd",
                                 "gpu": {"model": "MI300X", "count": 8}, "nics": ["mlx5_0"]})
    return write_inventory(lab_data)


def test_options_respect_the_kv_rules(lab3):
    inv = load_inventory(lab3).inventory
    options = enumerate_options(inv, GPT, DEFAULT)
    assert options
    for o in options:
        assert o.decode.tp >= o.prefill.tp
        cross = o.prefill.hardware != o.decode.hardware
        assert o.path == ("host" if cross else "device")
        if cross:
            assert o.prefill.tp == o.decode.tp
        assert not (set(o.prefill.hosts) & set(o.decode.hosts)) or o.prefill.hosts == o.decode.hosts
    kinds = {(o.prefill.hardware, o.decode.hardware) for o in options}
    assert kinds == {("H100-SXM", "MI300X"), ("MI300X", "H100-SXM"), ("MI300X", "MI300X"), ("H100-SXM", "H100-SXM")}


def test_current_option_reads_the_pools():
    inv = load_inventory(LAB).inventory
    o = current_option(inv)
    assert (o.prefill.hardware, o.prefill.tp, o.prefill.instances) == ("H100-SXM", 8, 1)
    assert (o.decode.hardware, o.decode.tp, o.decode.instances) == ("MI300X", 8, 1)
    assert o.path == "host" and o.threshold is None


def test_advise_ranks_with_error_bands_and_kv_stages(lab3):
    """Mechanics, not a finding: scores sorted, each prediction's band is the model's measured error,
    and the KV line is the sum of its stages with their rates."""
    inv = load_inventory(lab3).inventory
    result = advise(inv, GPT, [parse_workload("isl=8K,osl=8K,c=16")], DEFAULT)
    scores = [r.score for r in result.ranked]
    assert scores == sorted(scores)
    best = result.ranked[0]
    out = best.outcomes[0]
    low, high = out.band("e2el")
    assert low < out.e2el_s < high and high / out.e2el_s == pytest.approx(math.exp(MODEL_ERROR["e2el"]))
    assert out.band("ttft") is None  # the report gives no TTFT to measure the error against
    assert any(f"{low:.2f}-{high:.2f}" in r for r in best.reasons)
    host = next(r for r in result.ranked if r.option.path == "host" and r.option.threshold is None)
    xfer = host.outcomes[0].prediction.transfer
    kv_line = next(r for r in host.reasons if " KV " in r)
    assert kv_line.count(" + ") >= 2 and f"= {xfer.seconds * 1000:.1f} ms" in kv_line
    assert all(name in kv_line for name in ("save", "NIC", "load", "GB/s"))
    assert any("ahead of the next option" in r for r in best.reasons)


def test_top_two_within_the_model_error_are_called_equivalent(lab3):
    inv = load_inventory(lab3).inventory
    result = advise(inv, GPT, [parse_workload("isl=1K,osl=1K,c=8")], DEFAULT)
    first, second = result.ranked[:2]
    line = next(r for r in first.reasons if "ahead of the next option" in r)
    close = abs(math.log(first.score / second.score)) < MODEL_ERROR["ratio"]
    assert ("equivalent within the model's error" in line) == close
    if close:
        assert "xpdctl bench -i FILE --isl 1024 --osl 1024 --concurrency 8" in line


def test_single_vendor_inventory_gets_device_path_options():
    inv = load_inventory(data_dir("inventory") / "lab-single-vendor.yaml").inventory
    result = advise(inv, GPT, [parse_workload("isl=8K,osl=8K,c=16")], DEFAULT)
    assert {r.option.path for r in result.ranked} == {"device"}
    congested = [r for r in result.ranked if r.outcomes[0].prediction.congestion > 1.0]
    assert congested and any("KV bursts slow decode" in line and "fitted term" in line for line in congested[0].reasons)
    assert all(len(r.outcomes[0].prediction.transfer.stages) == 1 for r in result.ranked if r.option.threshold is None)


def test_tps_objective_ranks_by_throughput(lab3):
    inv = load_inventory(lab3).inventory
    result = advise(inv, GPT, [parse_workload("isl=1K,osl=1K,c=32")], DEFAULT, objective="tps")
    scores = [r.score for r in result.ranked]
    assert scores == sorted(scores, reverse=True)


def test_conditional_disagg_threshold_splits_a_mix(lab3):
    inv = load_inventory(lab3).inventory
    mix = [parse_workload("isl=128,osl=256,c=8"), parse_workload("isl=8K,osl=256,c=8")]
    result = advise(inv, GPT, mix, DEFAULT)
    thresholds = {r.option.threshold for r in result.ranked}
    assert thresholds == {None, 129, 8193}
    split = next(r for r in result.ranked if r.option.threshold == 129)
    short, long_ = split.outcomes
    assert short.prediction.transfer_s == 0 and long_.prediction.transfer_s > 0


def _measurement(tmp_path) -> tuple:
    """A results.json in `xpdctl bench`'s shape whose TTFT is 3x and TPOT 2x what the model predicts for lab.yaml."""
    inv = load_inventory(LAB).inventory
    option = current_option(inv)
    pred = Modeller(inv, GPT, DEFAULT).model_only(option, parse_workload("isl=1024,osl=128,c=4"))
    metrics = {"completed": 16, "median_ttft_ms": pred.ttft_s * 3000, "median_tpot_ms": pred.itl_s * 2000,
               "median_e2el_ms": 1000 * (pred.ttft_s * 3 + 127 * pred.itl_s * 2)}
    results = {"runs": [{"label": "lab", "url": "http://10.0.0.5:8000", "engine": "endpoint", "deployment": option.signature(),
                         "points": [{"isl": 1024, "osl": 128, "concurrency": 4, "metrics": metrics}]}]}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "results.json").write_text(json.dumps(results))
    return inv, option


def test_bench_measurements_correct_the_measured_sides(tmp_path):
    inv, option = _measurement(tmp_path)
    modeller = Modeller(inv, GPT, DEFAULT)
    work = parse_workload("isl=1024,osl=128,c=4")
    points, notes = load_measurements([tmp_path])
    assert len(points) == 1 and notes == []
    corrected = Modeller(inv, GPT, DEFAULT, points)
    out = corrected.outcome(option, parse_workload("isl=8K,osl=1K,c=8"))
    plain = modeller.outcome(option, parse_workload("isl=8K,osl=1K,c=8"))
    assert out.ttft_s == pytest.approx(3 * plain.ttft_s)
    assert out.itl_s == pytest.approx(2 * plain.itl_s)
    assert set(out.corrected) == {"prefill", "decode"}
    single = current_option(load_inventory(data_dir("inventory") / "lab-single-vendor.yaml").inventory)
    assert corrected.outcome(single, work).corrected == ()


def test_why_lines_show_the_tables_numbers_and_the_measured_values_behind_a_correction(tmp_path):
    """Issue 16 item 4: a corrected option's reasons carry the numbers its table row shows, the measured
    and modelled values each correction is the ratio of, and the model's own numbers labelled as such."""
    inv, option = _measurement(tmp_path)
    points, _ = load_measurements([tmp_path])
    result = advise(inv, GPT, [parse_workload("isl=8K,osl=1K,c=8")], DEFAULT, measured=points)
    ranked = next(r for r in result.ranked if r.option == option)
    out = ranked.outcomes[0]
    assert out.corrected == ("prefill", "decode")
    head = ranked.reasons[0]
    assert f"E2EL {out.e2el_s:.2f} s" in head and f"ITL {out.itl_s * 1000:.1f} ms" in head
    decode = next(line for line in ranked.reasons if " decode on " in line)
    assert f"ITL {out.itl_s * 1000:.1f} ms (model alone {out.prediction.itl_s * 1000:.1f} ms)" in decode
    bench = next(line for line in ranked.reasons if "bench-corrected" in line)
    measured, = points
    assert f"prefill TTFT x3.00 (measured {measured.ttft_s * 1000:.0f} ms / model" in bench
    assert f"decode ITL x2.00 (measured {measured.tpot_s * 1000:.1f} ms / model" in bench
    assert f"the model alone here: TTFT" in bench and f"E2EL {out.prediction.e2el_s:.2f} s" in bench


def test_advise_uses_bench_results_in_the_default_folder_unless_model_only(tmp_path, monkeypatch):
    _measurement(tmp_path / "bench-results" / "20260101-000000-lab")
    monkeypatch.chdir(tmp_path)
    args = ["advise", "-i", str(LAB), "-w", "isl=8K,osl=1K,c=8", "-o", "json"]
    with_bench = json.loads(CliRunner().invoke(cli, args).stdout)
    assert any(n.startswith("bench: 1 measured points correct prefill") for n in with_bench["notes"])
    alone = json.loads(CliRunner().invoke(cli, [*args, "--model-only"]).stdout)
    assert not alone["notes"]
    assert all(not r["predictions"][0]["corrected_by_bench"] for r in alone["ranked"])


@pytest.mark.parametrize(("change", "why"), [
    ({"engine": "simulator", "time_scale": 0.1}, "is simulated (xpdctl sim, time scale 0.1): not a measurement"),
    ({"engine": None}, "does not record which engine produced it"),
    ({"deployment": None}, "with no deployment tied to it: not used; run `xpdctl bench -i INVENTORY --url URL`"),
])
def test_results_that_are_not_measurements_of_a_deployment_are_left_out_with_a_note(tmp_path, change, why):
    _measurement(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    data["runs"][0].update(change)
    (tmp_path / "results.json").write_text(json.dumps(data))
    points, notes = load_measurements([tmp_path])
    assert points == [] and len(notes) == 1 and why in notes[0]
    res = CliRunner().invoke(cli, ["advise", "-i", str(LAB), "-w", "isl=1K,osl=1K,c=4", "--measured", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert why in res.output and "bench-corrected" not in res.output


def test_workload_parsing_errors_say_what_to_write():
    assert parse_workload("isl=8K,osl=1024,concurrency=32").isl == 8192
    assert parse_workload("isl=1k,osl=1k,c=1,rate=inf").request_rate is None
    with pytest.raises(InputError, match="missing concurrency"):
        parse_workload("isl=8K,osl=1K")
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_workload("isl=8K,osl=1K,c=4,foo=1")


def test_calibration_file_overrides_and_rejects_unknown_keys(tmp_path):
    good = tmp_path / "cal.yaml"
    good.write_text("host_save_gb_s: 12\n")
    assert load_calibration(good).host_save_gb_s == 12
    bad = tmp_path / "bad.yaml"
    bad.write_text("host_staged: 12\n")
    with pytest.raises(InputError, match="keys are"):
        load_calibration(bad)


def test_cli_json_and_write_back(lab3, tmp_path):
    out = tmp_path / "tuned.yaml"
    runner = CliRunner()
    res = runner.invoke(cli, ["advise", "-i", str(lab3), "-w", "isl=8192,osl=1024,concurrency=32", "-o", "json",
                              "--top", "3", "--write", str(out), "--model-only"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["ranked"]) == 3 and data["options_total"] > 3
    first = data["ranked"][0]
    assert {"ttft_ms", "itl_ms", "e2el_s", "tps"} <= set(first["predictions"][0])
    assert first["reasons"]
    written = load_inventory(out).inventory
    assert written.pools.prefill.hosts == first["prefill"]["hosts"]
    assert written.pools.decode.tensor_parallel == first["decode"]["tensor_parallel"]


def test_write_back_writes_everything_ranked_and_advise_reproduces_it(lab3, tmp_path):
    """A ranked option with a conditional-disagg threshold: the written inventory's plan gives the router
    that threshold and the pools the option's TP and instances, and advise on it predicts the same numbers."""
    from xpdctl.inventory.load import load_inventory as load
    from xpdctl.plan import build_plan

    work = ["-w", "isl=128,osl=256,c=8", "-w", "isl=8K,osl=256,c=8"]
    ranked = json.loads(CliRunner().invoke(cli, ["advise", "-i", str(lab3), *work, "-o", "json", "--top", "100",
                                                 "--model-only"]).stdout)["ranked"]
    pick = next(r for r in ranked if r["conditional_disagg_threshold"] and r["prefill"]["tensor_parallel"] == 4)
    out = tmp_path / "tuned.yaml"
    res = CliRunner().invoke(cli, ["advise", "-i", str(lab3), *work, "--model-only", "--write", str(out),
                                   "--pick", str(pick["rank"])])
    assert res.exit_code == 0, res.output
    loaded = load(out)
    inv = loaded.inventory
    assert inv.router.conditional_disagg and inv.router.conditional_disagg_min_prompt_tokens == pick["conditional_disagg_threshold"]
    assert current_option(inv).key() == pick["option"]
    plan = build_plan(loaded, {"HF_TOKEN": "x"})
    router = plan.hosts[inv.router.hosts[0]].router_config
    assert [s.role for s in plan.engines].count("prefill") == pick["prefill"]["instances"]
    assert router.conditional_disagg.enabled and router.conditional_disagg.min_prompt_tokens == pick["conditional_disagg_threshold"]
    again = advise(inv, GPT, [parse_workload(w) for w in work[1::2]], DEFAULT)
    same = next(r for r in again.ranked if r.option == current_option(inv))
    assert [round(o.e2el_s, 3) for o in same.outcomes] == [p["e2el_s"] for p in pick["predictions"]]


def test_write_back_keeps_comments_and_order(tmp_path):
    out = tmp_path / "lab-tuned.yaml"
    res = CliRunner().invoke(cli, ["advise", "-i", str(LAB), "-w", "isl=8K,osl=8K,c=16", "--write", str(out), "--model-only"])
    assert res.exit_code == 0, res.output
    before, after = LAB.read_text(), out.read_text()
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(c in after for c in comments)
    assert list(yaml.safe_load(after)) == list(yaml.safe_load(before))
    assert "why #1:" in res.output and "wrote" in res.output


def test_write_back_refuses_an_inventory_that_would_not_validate(lab_data, write_inventory, tmp_path):
    # Valid while the MI300X host runs nothing; the best option pools it, and it has no engine image.
    del lab_data["engine"]["images"]["amd"]
    lab_data["pools"]["decode"]["hosts"] = ["h100-01"]
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    lab_data["pools"]["decode"]["tensor_parallel"] = 4
    src = write_inventory(lab_data)
    load_inventory(src)
    out = tmp_path / "never.yaml"
    res = CliRunner().invoke(cli, ["advise", "-i", str(src), "-w", "isl=8K,osl=8K,c=16", "--write", str(out), "--model-only"])
    assert res.exit_code != 0
    assert isinstance(res.exception, InputError) and "do not make a valid inventory" in res.exception.message
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_cli_prints_bands_and_each_options_kv_stages_with_rates():
    """Issue 16's done-when: every option's E2EL/TPS with its band, the KV time as the sum of its stages."""
    res = CliRunner().invoke(cli, ["advise", "-i", str(LAB), "-w", "isl=8K,osl=8K,c=16", "--model-only"])
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.output.splitlines() if line[:1].isdigit()]
    assert rows and all("(" in " ".join(r) and "-" in " ".join(r) for r in rows)
    kv_lines = [line for line in res.output.splitlines() if line.startswith("kv transfer #")]
    ranks = {int(n) for line in kv_lines for n in line.split(":")[0].removeprefix("kv transfer ").replace("#", "").split(",")}
    host_ranks = {int(r[0]) for r in rows if r[-2] != "-" and "+" in r[-2]}
    assert host_ranks and host_ranks == ranks
    for line in kv_lines:
        assert all(stage in line for stage in ("save ", " + NIC ", " + load ")) and line.count("GB/s") == 3
        stages = [float(ms) for ms in re.findall(r"(?:save|NIC|load) ([\d.]+) ms \(", line)]
        assert len(stages) == 3
        total = float(line.rsplit("= ", 1)[1].removesuffix(" ms"))
        assert sum(stages) == pytest.approx(total, abs=0.2)
