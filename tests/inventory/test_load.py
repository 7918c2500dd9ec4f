"""Loading: every schema problem reported at its line, all at once, exit status 2."""

import subprocess
import sys

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory

BAD = """\
cluster: lab
model:
  name: m
engine:
  vllm_version: "0.15.0"
  images: {nvidia: "vllm/vllm-openai@sha256:1"}
  xpdctl_image: "x@sha256:1"
hosts:
  - {name: h100-01, adress: 10.0.0.11, vendor: nvidia, gpu: {model: H100, count: 8}}
  - {name: h100-02, address: 10.0.0.12, vendor: nvidia, gpu: {model: H100, count: eight}}
pools:
  prefill: {hosts: [h100-01], tensor_parallel: 8}
router: {hosts: [h100-02], port: 8000, auth: {mode: open}}
"""


def _details(path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    return info.value.details


def test_shipped_inventories_load():
    for name in ("lab", "lab-single-vendor", "local"):
        assert load_inventory(f"inventory/{name}.yaml").inventory.hosts


def test_schema_problems_all_at_once_with_lines(write_inventory):
    path = write_inventory(BAD)
    details = _details(path)
    assert details == [
        f"{path}:9: hosts[0].address: required but missing; add it",
        f"{path}:9: hosts[0].adress: unknown key; did you mean 'address'?",
        f"{path}:10: hosts[1].gpu.count: Input should be a valid integer, unable to parse string as an "
        "integer (got 'eight'); fix the value",
        f"{path}:11: pools.decode: required but missing; add it",
    ]


def test_unknown_key_without_a_close_match_lists_known_keys(write_inventory, lab_data):
    lab_data["kv"]["colour"] = "blue"
    (line,) = _details(write_inventory(lab_data))
    assert "kv.colour: unknown key; remove it (known keys: agent_port, allow_cross_vendor_tp_mismatch" in line


def test_duplicate_key_reported_at_second_occurrence(write_inventory):
    text = open("inventory/local.yaml").read().replace("cluster: local\n", "cluster: local\ncluster: other\n")
    path = write_inventory(text)
    details = _details(path)
    assert len(details) == 1
    assert details[0].startswith(f"{path}:6: cluster: key 'cluster' appears twice")


def test_yaml_syntax_error_has_a_line(write_inventory):
    path = write_inventory("cluster: lab\nhosts: [a, b\nrouter: {}\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert info.value.message.startswith(f"{path}:")
    assert "not valid YAML" in info.value.message


def test_not_a_mapping(write_inventory):
    assert "must be a mapping" in _details(write_inventory("- a\n- b\n"))[0]


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the inventory"):
        load_inventory(tmp_path / "nope.yaml")


def test_relative_paths_resolve_against_the_inventory_file():
    inv = load_inventory("inventory/local.yaml").inventory
    assert inv.engine.python.endswith("/.venv/bin/python")
    assert inv.engine.python.startswith("/")
    assert "/inventory/" not in inv.engine.python
    assert inv.model.weights_path.startswith("/") and "~" not in inv.model.weights_path


def test_cli_prints_every_problem_and_exits_2(write_inventory):
    path = write_inventory(BAD)
    result = subprocess.run(
        [sys.executable, "-m", "xpdctl", "check", "-i", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"xpdctl: error: {path}: inventory has 4 problems; fix the lines below"
    assert [line.split(": ")[1] for line in lines[1:]] == [
        "hosts[0].address", "hosts[0].adress", "hosts[1].gpu.count", "pools.decode"
    ]


def test_x_keys_hold_anchors_for_hosts(write_inventory):
    text = open("inventory/lab.yaml").read()
    text = text.replace("hosts:\n", "x-mi300x: &mi300x {vendor: amd, gpu: {model: MI300X, count: 8}, nics: [mlx5_0]}\nhosts:\n")
    text = text.replace(
        "  - {name: mi300x-01, address: 10.0.0.21, vendor: amd, gpu: {model: MI300X, count: 8}, nics: [mlx5_0]}",
        "  - {<<: *mi300x, name: mi300x-01, address: 10.0.0.21}",
    )
    inv = load_inventory(write_inventory(text)).inventory
    assert inv.hosts[1].vendor == "amd" and inv.hosts[1].gpu.count == 8


def test_router_host_of_older_inventories_names_the_rewrite(write_inventory, lab_data):
    lab_data["router"] = {"host": "gw-01", "port": 8000}
    path = write_inventory(lab_data)
    (detail,) = _details(path)
    assert detail.endswith(": router.host: renamed to router.hosts, a list; write `hosts: [gw-01]`")
    line = int(detail.split(":")[1])
    assert path.read_text().splitlines()[line - 1].strip().startswith("host: gw-01")
