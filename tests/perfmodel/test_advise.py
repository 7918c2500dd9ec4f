"""`xpdctl advise`: options from an inventory, ranking, reasons, bench corrections, write-back."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from xpdctl.cli import cli
from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.paths import data_dir
from xpdctl.perfmodel.advise import Modeller, advise
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


def test_advise_puts_h100_prefill_and_mi300x_decode_first_for_long_sequences(lab3):
    """The report's assignment (H100 prefill, MI300X decode) wins at 8K/8K concurrency 16 on its hardware."""
    inv = load_inventory(lab3).inventory
    result = advise(inv, GPT, [parse_workload("isl=8K,osl=8K,c=16")], DEFAULT)
    best = result.ranked[0]
    assert (best.option.prefill.hardware, best.option.decode.hardware) == ("H100-SXM", "MI300X")
    assert any("through host memory" in r for r in best.reasons)
    assert any("ahead of the next option" in r for r in best.reasons)
    scores = [r.score for r in result.ranked]
    assert scores == sorted(scores)


def test_single_vendor_inventory_gets_device_path_options():
    inv = load_inventory(data_dir("inventory") / "lab-single-vendor.yaml").inventory
    result = advise(inv, GPT, [parse_workload("isl=8K,osl=8K,c=16")], DEFAULT)
    assert {r.option.path for r in result.ranked} == {"device"}
    congested = [r for r in result.ranked if r.outcomes[0].prediction.congestion > 1.0]
    assert congested and any("KV bursts on the device path" in line for line in congested[0].reasons)


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
    results = {"runs": [{"deployment": option.signature(),
                         "points": [{"isl": 1024, "osl": 128, "concurrency": 4, "metrics": metrics}]}]}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "results.json").write_text(json.dumps(results))
    return inv, option


def test_bench_measurements_correct_the_measured_sides(tmp_path):
    inv, option = _measurement(tmp_path)
    modeller = Modeller(inv, GPT, DEFAULT)
    work = parse_workload("isl=1024,osl=128,c=4")
    corrected = Modeller(inv, GPT, DEFAULT, load_measurements([tmp_path]))
    out = corrected.outcome(option, parse_workload("isl=8K,osl=1K,c=8"))
    plain = modeller.outcome(option, parse_workload("isl=8K,osl=1K,c=8"))
    assert out.ttft_s == pytest.approx(3 * plain.ttft_s)
    assert out.itl_s == pytest.approx(2 * plain.itl_s)
    assert set(out.corrected) == {"prefill", "decode"}
    single = current_option(load_inventory(data_dir("inventory") / "lab-single-vendor.yaml").inventory)
    assert corrected.outcome(single, work).corrected == ()


def test_advise_uses_bench_results_in_the_default_folder_unless_model_only(tmp_path, monkeypatch):
    _measurement(tmp_path / "bench-results" / "20260101-000000-lab")
    monkeypatch.chdir(tmp_path)
    args = ["advise", "-i", str(LAB), "-w", "isl=8K,osl=1K,c=8", "-o", "json"]
    with_bench = json.loads(CliRunner().invoke(cli, args).stdout)
    assert any(n.startswith("bench: 1 points correct prefill") for n in with_bench["notes"])
    alone = json.loads(CliRunner().invoke(cli, [*args, "--model-only"]).stdout)
    assert not alone["notes"]
    assert all(not r["predictions"][0]["corrected_by_bench"] for r in alone["ranked"])


def test_workload_parsing_errors_say_what_to_write():
    assert parse_workload("isl=8K,osl=1024,concurrency=32").isl == 8192
    assert parse_workload("isl=1k,osl=1k,c=1,rate=inf").request_rate is None
    with pytest.raises(InputError, match="missing concurrency"):
        parse_workload("isl=8K,osl=1K")
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_workload("isl=8K,osl=1K,c=4,foo=1")


def test_calibration_file_overrides_and_rejects_unknown_keys(tmp_path):
    good = tmp_path / "cal.yaml"
    good.write_text("host_staged_gb_s: 12\n")
    assert load_calibration(good).host_staged_gb_s == 12
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
