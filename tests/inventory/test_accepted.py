"""Free-text inventory fields checked against what vLLM accepts (per release) and the GPU catalog."""

from pathlib import Path

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.releases import releases
from xpdctl.vendors import vendor_profiles


def vllm_values() -> dict:
    return {version: r.accepts for version, r in releases().items() if r.accepts is not None}


def _problems(write_inventory, data) -> tuple[Path, list[str]]:
    path = write_inventory(data)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    return path, info.value.details


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


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


def test_a_release_missing_from_the_table_is_one_error_saying_what_to_add(write_inventory, lab_data):
    lab_data["engine"]["vllm_version"] = "0.15.1"
    lab_data["hosts"][1].pop("vllm_version")
    path, details = _problems(write_inventory, lab_data)
    [found] = [d for d in details if "0.15.1" in d]
    assert found.startswith(f"{path}:{_line_of(path, 'vllm_version')}: engine.vllm_version: vLLM 0.15.1 is not in "
                            "xpdctl's release table")
    assert "xpdctl/releases/vllm.yaml" in found and "compute_nixl_compatibility_hash" in found
    assert "python -m xpdctl.releases.vllm_source" in found


def test_a_release_whose_accepted_values_were_not_read_says_so(write_inventory, lab_data):
    lab_data["engine"]["vllm_version"] = "0.26.0"
    lab_data["hosts"][1].pop("vllm_version")
    _, details = _problems(write_inventory, lab_data)
    [found] = [d for d in details if "accepts" in d]
    assert "what vLLM 0.26.0 accepts is not in vllm.yaml yet; add its `accepts:` block" in found


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
