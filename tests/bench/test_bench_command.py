"""`xpdctl bench` arguments and failures a person can act on."""

from __future__ import annotations

from click.testing import CliRunner

from xpdctl.cli import cli
from xpdctl.errors import ExecutionError, InputError


def _run(*args):
    return CliRunner().invoke(cli, ["bench", *args])


def test_needs_a_target():
    res = _run("--isl", "8")
    assert isinstance(res.exception, InputError) and "give -i INVENTORY" in res.exception.message
    res = _run("--url", "http://127.0.0.1:9")
    assert isinstance(res.exception, InputError) and "--model is required" in res.exception.message


def test_bad_grid_values_are_input_errors(tmp_path):
    res = _run("--url", "http://127.0.0.1:9", "--model", "m", "--concurrency", "1,x", "--out", str(tmp_path))
    assert isinstance(res.exception, InputError) and "not a count" in res.exception.message


def test_a_dead_endpoint_fails_fast_and_leaves_no_folder(tmp_path):
    res = _run("--url", "http://127.0.0.1:9", "--model", "m", "--isl", "8", "--osl", "2", "--concurrency", "1",
               "--backend", "builtin", "--out", str(tmp_path))
    assert isinstance(res.exception, ExecutionError)
    assert "every warm-up request failed" in res.exception.message
    assert list(tmp_path.iterdir()) == []


def test_vllm_backend_needs_a_tokenizer(tmp_path):
    res = _run("--url", "http://127.0.0.1:9", "--model", "m", "--backend", "vllm", "--out", str(tmp_path))
    assert isinstance(res.exception, InputError) and "needs a local tokenizer" in res.exception.message
