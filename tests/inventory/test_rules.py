"""One test per cross-field rule: the problem is found, at the right field and line, with advice."""

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory


@pytest.fixture
def problems(write_inventory):
    def run(data) -> list[str]:
        path = write_inventory(data)
        with pytest.raises(InputError) as info:
            load_inventory(path)
        # Drop the file name: the tests compare "LINE: field: message".
        return [line.split(":", 1)[1] for line in info.value.details]

    return run


def _host(name, address, vendor="amd", count=8, **extra):
    return {"name": name, "address": address, "vendor": vendor, "gpu": {"model": "MI300X", "count": count}, **extra}


def test_duplicate_host_name_and_address(problems, lab_data):
    lab_data["hosts"].append(_host("h100-01", "10.0.0.21"))
    found = problems(lab_data)
    assert any("hosts[3].name: name 'h100-01' is already used by hosts[0]" in p for p in found)
    assert any("hosts[3].address: address '10.0.0.21' is already used by hosts[1]" in p for p in found)


def test_pool_names_unknown_host(problems, lab_data):
    lab_data["pools"]["decode"]["hosts"] = ["mi300x-01", "mi300x-99"]
    (found,) = problems(lab_data)
    assert "pools.decode.hosts[1]: no host named 'mi300x-99'; declare it under hosts" in found


def test_host_listed_twice_in_a_pool(problems, lab_data):
    lab_data["pools"]["decode"]["hosts"] = ["mi300x-01", "mi300x-01"]
    (found,) = problems(lab_data)
    assert "pools.decode.hosts[1]: 'mi300x-01' is listed twice; use instances_per_host" in found


def test_router_on_unknown_host(problems, lab_data):
    lab_data["router"]["hosts"] = ["gw-02"]
    (found,) = problems(lab_data)
    assert "router.hosts[0]: no host named 'gw-02'" in found


def test_two_routers_need_a_virtual_address(problems, lab_data):
    lab_data["router"]["hosts"] = ["gw-01", "gw-01", "h100-01"]
    found = problems(lab_data)
    assert any("router.hosts[1]: 'gw-01' is listed twice" in p for p in found)
    assert any("router.hosts: two or more routers need one address for clients: add router.vip" in p for p in found)


def test_pooled_host_needs_vendor_and_gpu(problems, lab_data):
    lab_data["pools"]["decode"]["hosts"] = ["mi300x-01", "gw-01"]
    found = problems(lab_data)
    assert any("hosts[2]: host 'gw-01' is in a pool but has no vendor; add vendor: amd | cpu | nvidia" in p for p in found)
    assert any("hosts[2]: host 'gw-01' is in a pool but has no gpu" in p for p in found)


def test_unknown_vendor(problems, lab_data):
    lab_data["hosts"][1]["vendor"] = "amdd"
    found = problems(lab_data)
    assert any("hosts[1].vendor: unknown vendor 'amdd'; use one of amd, cpu, nvidia" in p for p in found)


def test_tp_must_divide_gpu_count(problems, lab_data):
    lab_data["hosts"][1]["gpu"]["count"] = 12
    (found,) = problems(lab_data)
    assert "pools.decode.tensor_parallel: TP 8 does not divide the 12 GPUs of mi300x-01" in found


def test_host_in_both_pools_without_enough_gpus(problems, lab_data):
    lab_data["pools"]["prefill"]["hosts"] = ["mi300x-01"]
    found = problems(lab_data)
    # 8 GPUs shared by two pools of TP 8: neither gets an instance.
    assert any("hosts[1].gpu.count: 'mi300x-01' has 8 GPUs (it is in both pools, so each gets half), too few "
               "for one prefill instance of TP 8" in p for p in found)


def test_explicit_instances_beyond_gpu_count(problems, lab_data):
    lab_data["pools"]["decode"]["instances_per_host"] = 2
    (found,) = problems(lab_data)
    assert "hosts[1].gpu.count: 'mi300x-01' has 8 GPUs but its instances need 16" in found


def test_vendor_without_image(problems, lab_data):
    del lab_data["engine"]["images"]["amd"]
    (found,) = problems(lab_data)
    assert "engine.images: no image for vendor 'amd' (host 'mi300x-01' runs containers)" in found


def test_image_not_pinned_by_digest(problems, lab_data):
    lab_data["engine"]["images"]["amd"] = "rocm/vllm:latest"
    (found,) = problems(lab_data)
    assert "engine.images.amd: image 'rocm/vllm:latest' is not pinned by digest; use rocm/vllm@sha256:<digest>" in found


def test_image_for_unknown_vendor(problems, lab_data):
    lab_data["engine"]["images"]["intel"] = "x@sha256:1"
    (found,) = problems(lab_data)
    assert "engine.images.intel: unknown vendor 'intel'" in found


def test_native_runtime_needs_python(problems, lab_data):
    lab_data["hosts"][1]["runtime"] = "native"
    (found,) = problems(lab_data)
    assert "engine.python: hosts mi300x-01 run natively but engine.python is not set" in found


def test_containers_need_the_xpdctl_image(problems, lab_data):
    del lab_data["engine"]["xpdctl_image"]
    (found,) = problems(lab_data)
    assert "engine: hosts h100-01, mi300x-01, gw-01 run the router, KV agent or simulator in containers" in found


def test_port_clash_points_at_the_port_written_down(problems, lab_data, tmp_path):
    lab_data["pools"]["prefill"]["port"] = 5600  # the default NIXL side channel
    lab_data["router"]["hosts"] = ["mi300x-01"]
    lab_data["router"]["port"] = 8788  # the default KV agent port
    found = problems(lab_data)
    text = (tmp_path / "inventory.yaml").read_text().splitlines()
    line, message = found[0].split(": ", 1)
    assert text[int(line) - 1].strip() == "port: 5600"
    assert message == ("pools.prefill.port: port 5600 on h100-01 is used by both prefill instance 0 and the NIXL "
                       "side channel of prefill instance 0; change one")
    line, message = found[1].split(": ", 1)
    assert text[int(line) - 1].strip() == "port: 8788"
    assert message.startswith("router.port: port 8788 on mi300x-01 is used by both the KV agent and the router")


def test_all_problems_reported_together_in_file_order(problems, lab_data):
    lab_data["hosts"][1]["vendor"] = "amdd"
    lab_data["pools"]["decode"]["hosts"].append("nope")
    lab_data["router"]["hosts"] = ["gw-02"]
    found = problems(lab_data)
    assert len(found) == 3
    lines = [int(p.split(":")[0]) for p in found]
    assert lines == sorted(lines)


def test_xpdctl_image_must_be_pinned_too(problems, lab_data):
    lab_data["engine"]["xpdctl_image"] = "ghcr.io/xpdctl/xpdctl:latest"
    (found,) = problems(lab_data)
    assert "engine.xpdctl_image: image 'ghcr.io/xpdctl/xpdctl:latest' is not pinned by digest" in found


def test_native_host_running_engines_and_router_is_named_once(problems, write_inventory):
    text = open("inventory/local.yaml").read().replace("  python: ../.venv/bin/python # relative to this file\n", "")
    (found,) = problems(text)
    assert "engine.python: hosts local run natively but engine.python is not set" in found


def test_sim_server_in_containers_needs_no_vendor_image(write_inventory, lab_data):
    lab_data["engine"]["server"] = "sim"
    lab_data["engine"]["images"] = {}
    assert load_inventory(write_inventory(lab_data)).inventory.engine.server == "sim"


def test_loopback_address_beside_networked_hosts(problems, lab_data):
    lab_data["hosts"][0]["address"] = "127.0.0.1"
    (found,) = problems(lab_data)
    assert ("hosts[0].address: 127.0.0.1 is a loopback address, unreachable from mi300x-01, gw-01, whose engines "
            "or router must reach this host; use its network address") in found


def test_all_loopback_clusters_are_consistent(write_inventory, lab_data):
    for i, host in enumerate(lab_data["hosts"]):
        host["address"] = f"127.0.0.{i + 1}"
    assert load_inventory(write_inventory(lab_data)).inventory.hosts[2].address == "127.0.0.3"


def test_extra_args_cannot_override_checked_settings(problems, lab_data):
    lab_data["engine"]["extra_args"] = ["--kv-cache-dtype=fp8", "--enable-chunked-prefill", "--no_enable_prefix_caching"]
    lab_data["pools"]["decode"]["extra_args"] = ["--gpu-memory-utilization", "0.9", "--enable-prefix-caching"]
    found = problems(lab_data)
    assert len(found) == 3
    assert "engine.extra_args[0]: --kv-cache-dtype=fp8 is set by xpdctl; set model.kv_cache_dtype instead" in found[0]
    assert ("pools.decode.extra_args[2]: --enable-prefix-caching is set by xpdctl; set pools.<role>.prefix_caching "
            "instead") in found[2]
    assert "engine.extra_args[2]: --no_enable_prefix_caching is set by xpdctl" in found[1]


def test_ports_past_65535(problems, lab_data):
    lab_data["pools"]["decode"]["tensor_parallel"] = 4
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    lab_data["pools"]["decode"]["port"] = 65535
    (found,) = problems(lab_data)
    assert "pools.decode.port: decode instance 1 on mi300x-01 would get port 65536, beyond 65535; lower it" in found
