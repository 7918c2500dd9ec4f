"""The NIXL interop table (xpdctl/releases/nixl_interop.yaml): its runs, the verdict it gives a pair of
builds, and the builds no cell can hold (ROCm's, no PyPI wheel), which must say why."""

from xpdctl.releases import Interop, nixl_interop, releases

PAIR = ("nixl 1.5.1", "nixl 1.5.0")


def test_every_cell_belongs_to_a_described_run_and_vllm_level_runs_name_their_release():
    table = nixl_interop()
    assert {run.level for run in table.runs.values()} == {"NIXL API", "vLLM"}
    for name, run in table.runs.items():
        assert run.date and run.command, name
        assert (run.vllm is not None) == (run.level == "vLLM"), name
    assert {c.run for c in table.measured} == set(table.runs)


def _table(*cells):
    return Interop.model_validate({
        "runs": {"api": {"level": "NIXL API", "date": "d1", "command": "c1"},
                 "pd": {"level": "vLLM", "vllm": "0.32.0", "date": "d2", "command": "c2"}},
        "measured": [{"run": run, "source": PAIR[0], "reader": PAIR[1], "result": result} for run, result in cells],
    })


def test_a_pair_measured_at_both_levels_is_judged_by_its_vllm_level_cell():
    verdict = _table(("api", "ok"), ("pd", "ok")).verdict(PAIR, ("nixl", "nixl"))
    assert verdict.result == "ok" and verdict.why == ("nixl 1.5.1 -> nixl 1.5.0 measured to move KV through vLLM "
                                                      "0.32.0's NIXL connector (vLLM level), d2 "
                                                      "(xpdctl/releases/nixl_interop.yaml)")
    verdict = _table(("api", "ok")).verdict(PAIR, ("nixl", "nixl"))
    assert verdict.result == "ok" and "at the NIXL API level (the KV agent's probe, not through vLLM's" in verdict.why


def test_the_shipped_pair_of_releases_is_judged_by_its_vllm_level_cells_both_ways():
    """nixl 1.5.1 and 1.5.0 were measured at both levels (tests/kvagent/test_nixl_interop.py,
    tests/vllm_tier/test_nixl_versions_vllm.py); the verdict names the vLLM-level run."""
    for pair in (PAIR, PAIR[::-1]):
        assert [run.level for _, run in nixl_interop().cells(*pair)] == ["vLLM", "NIXL API"]
        verdict = nixl_interop().verdict(pair, ("nixl", "nixl"))
        assert verdict.result == "ok" and "through vLLM 0.32.0's NIXL connector (vLLM level)" in verdict.why


def test_a_cell_measured_broken_refuses_the_pair_whatever_else_was_measured():
    table = Interop.model_validate({
        **_table(("api", "ok")).model_dump(),
        "measured": [{"run": "api", "source": PAIR[0], "reader": PAIR[1], "result": "ok"},
                     {"run": "pd", "source": PAIR[0], "reader": PAIR[1], "result": "broken",
                      "how": "the decode answered HTTP 500"}],
    })
    verdict = table.verdict(PAIR, ("nixl", "nixl"))
    assert not verdict.allowed and verdict.why == (
        "nixl 1.5.1 -> nixl 1.5.0 was measured not to move KV at the vLLM level (d2: the decode answered HTTP 500) "
        "(xpdctl/releases/nixl_interop.yaml); install one build on both sides")
    verdict = table.verdict(PAIR[::-1], ("nixl", "nixl"))  # the other direction has no cell
    assert verdict.result == "not measured" and verdict.allowed
    assert "not measured against each other; measure it with benchmarks/nixl_interop.py" in verdict.why


def test_every_rocm_nixl_module_a_release_imports_says_why_it_is_not_measured():
    """RIXL and nixl_rocm have no PyPI wheel: no cell, and the verdict says so instead of 'run the benchmark'."""
    table = nixl_interop()
    modules = {r.nixl_import("amd").module for r in releases().values()}
    assert modules == {"rixl", "nixl_rocm"}
    for module in modules:
        verdict = table.verdict(("nixl 1.5.1", f"{module} 1.0"), ("nixl", module))
        assert verdict.result == "not measured" and "not measured: NIXL's ROCm builds have no PyPI wheel" in verdict.why
    assert not any(module in f"{c.source} {c.reader}" for c in table.measured for module in modules)
