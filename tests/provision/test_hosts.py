"""Inventory + render -> the Ansible inventory the playbooks read (inventory/lab.yaml, rendered for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan
from xpdctl.provision.hosts import ansible_inventory, container_image
from xpdctl.render import render_files, write_tree


@pytest.fixture
def lab(tmp_path, lab_data, write_inventory):
    loaded = load_inventory(write_inventory(lab_data))
    render_dir = tmp_path / "rendered"
    write_tree(render_files(build_plan(loaded, {"HF_TOKEN": "hf_secret"})), render_dir)
    inventory = ansible_inventory(loaded.inventory, render_dir, known_hosts=tmp_path / "known_hosts")
    return loaded.inventory, render_dir, inventory


def test_ssh_settings_and_a_per_cluster_known_hosts(lab, tmp_path):
    _, _, inventory = lab
    h100 = inventory["all"]["hosts"]["h100-01"]
    assert (h100["ansible_host"], h100["ansible_user"], h100["ansible_port"]) == ("10.0.0.11", "ubuntu", 22)
    assert h100["ansible_ssh_private_key_file"] == str(Path("~/.ssh/id_ed25519").expanduser())
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in h100["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=accept-new" in h100["ansible_ssh_common_args"]


def test_gpu_hosts_carry_vendor_model_count_and_nics(lab):
    inv, _, inventory = lab
    hosts = inventory["all"]["hosts"]
    assert {k: hosts["mi300x-01"][k] for k in ("xpd_gpu_vendor", "xpd_gpu_model", "xpd_gpu_count", "xpd_nics")} == {
        "xpd_gpu_vendor": "amd", "xpd_gpu_model": "MI300X", "xpd_gpu_count": 8, "xpd_nics": ["mlx5_0"],
    }  # fmt: skip
    assert hosts["gw-01"]["xpd_gpu_vendor"] == "" and hosts["gw-01"]["xpd_gpu_count"] == 0


def test_images_come_from_the_rendered_docker_commands(lab):
    inv, _, inventory = lab
    hosts = inventory["all"]["hosts"]
    assert hosts["h100-01"]["xpd_images"] == [inv.engine.images["nvidia"], inv.engine.xpdctl_image]
    assert hosts["mi300x-01"]["xpd_images"] == [inv.engine.images["amd"], inv.engine.xpdctl_image]
    assert hosts["gw-01"]["xpd_images"] == [inv.engine.xpdctl_image]
    assert all(h["xpd_container_runtime"] for h in hosts.values())


def test_only_engine_hosts_get_the_model(lab):
    inv, _, inventory = lab
    hosts = inventory["all"]["hosts"]
    assert hosts["h100-01"]["xpd_model"] == {
        "name": inv.model.name, "revision": inv.model.revision, "path": "/var/lib/xpdctl/models/openai/gpt-oss-120b",
    }  # fmt: skip
    assert hosts["gw-01"]["xpd_model"] == {}


def test_services_are_listed_for_preflight_to_check_their_units_and_ports(lab):
    _, _, inventory = lab
    services = inventory["all"]["hosts"]["h100-01"]["xpd_services"]
    assert [s["role"] for s in services] == ["prefill", "kv-agent"]
    agent = services[1]
    assert agent["unit"] == "/etc/systemd/system/xpd-lab-kv-agent.service"
    assert (agent["port"], agent["host"]) == (8788, "10.0.0.11")
    assert "xpd_files" not in inventory["all"]["hosts"]["h100-01"]  # xpdctl's applier installs them


def test_groups_by_vendor_and_service_role_for_limit(lab):
    _, _, inventory = lab
    children = inventory["all"]["children"]
    assert {name: sorted(group["hosts"]) for name, group in children.items()} == {
        "amd": ["mi300x-01"], "nvidia": ["h100-01"], "prefill": ["h100-01"], "decode": ["mi300x-01"],
        "kv-agent": ["h100-01", "mi300x-01"], "router": ["gw-01"],
    }  # fmt: skip


def test_a_missing_render_says_how_to_make_one(tmp_path, lab_data, write_inventory):
    loaded = load_inventory(write_inventory(lab_data))
    with pytest.raises(InputError, match="xpdctl render"):
        ansible_inventory(loaded.inventory, tmp_path / "nothing", known_hosts=tmp_path / "kh")


@pytest.mark.parametrize(
    "command, image",
    [
        (["/usr/bin/docker", "run", "--rm", "--name=x", "--entrypoint=python3", "img@sha256:ab", "-m", "x"], "img@sha256:ab"),
        (["docker", "run", "--name", "x", "-v", "/a:/a", "img:1", "serve"], "img:1"),
        (["/opt/venv/bin/python", "-m", "xpdctl", "router"], None),
        (["/usr/bin/docker", "stop", "x"], None),
        (["/etc/xpdctl/container-run", "x", "/usr/bin/docker", "run", "--detach", "--name=x", "img@sha256:cd", "-m"],
         "img@sha256:cd"),
    ],
)
def test_container_image(command, image):
    assert container_image(command) == image
