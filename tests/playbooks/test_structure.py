"""What the playbooks promise about their own structure, read from Ansible itself or the parsed YAML:
a tag per role (``--tags rdma`` runs one layer), the disruptive steps in batches after every install,
role metadata that claims only the platforms preflight allows, and which hosts Secure Boot blocks.

These are the second-best tests, for what test hosts cannot show (the tag list, the platform claim)
or as a fast guard of what tests/provision/test_testhosts.py shows on hosts (order, batches)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.playbooks.test_lint import BIN, PLAYBOOKS, _env

ROLES = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
# Roles that do something on their own; pinned_packages is only included by the others.
LAYERS = [r for r in ROLES if r not in ("pinned_packages", "preflight")]


def _playbook(*args: str) -> str:
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "site.yml", *args],
        cwd=PLAYBOOKS, env={**_env(), "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def all_tasks() -> str:
    return _playbook("--list-tasks")


def test_every_role_is_a_tag():
    listed = re.findall(r"TASK TAGS: \[([^\]]*)\]", _playbook("--list-tags"))
    assert set(LAYERS) <= {tag.strip() for line in listed for tag in line.split(",")}


def test_tags_rdma_runs_the_rdma_layer_and_the_checks_only():
    tasks = re.findall(r"^\s{6}(\S+) : ", _playbook("--list-tasks", "--tags", "rdma"), re.MULTILINE)
    # preflight always runs (a failing host gets no changes); the reboot role's read-only probe of
    # pending reboots and its report run under any tag.
    assert set(tasks) == {"preflight", "rdma", "reboot"} and "rdma" in tasks


def _plays() -> list[dict]:
    return yaml.safe_load((PLAYBOOKS / "site.yml").read_text())


def test_reboot_and_daemons_run_in_batches_after_every_install():
    plays = _plays()
    provision = next(p for p in plays if p.get("name") == "Provision")
    installs = [r["role"] for r in provision["roles"]]
    assert "reboot" not in installs and "services" not in installs and "nvidia_driver" in installs
    batched = [p for p in plays if "serial" in p]
    assert [p["hosts"] for p in batched] == ["all:!router", "router"]  # the router host last
    assert plays.index(batched[0]) > plays.index(provision)
    for play in batched:
        assert "xpd_reboot_serial" in play["serial"]
        steps = [(t["ansible.builtin.import_role"]["name"], t["ansible.builtin.import_role"].get("tasks_from"))
                 for t in play["tasks"]]  # fmt: skip
        # fabric manager and the persistence daemon start after the reboot; the cluster's services are
        # not the playbooks' to install (xpdctl's applier does), but a batch waits for the installed
        # ones to listen again before the next goes down.
        assert steps == [("reboot", None), ("nvidia_driver", "daemons"), ("reboot", "serving")]


def test_no_fabric_manager_start_before_the_reboot(all_tasks):
    provision = all_tasks.split("): Provision")[1].split("play #")[0]
    batched = all_tasks.split("): Reboot and start, engine hosts in batches")[1]
    assert "Enable and start the NVIDIA daemons" not in provision
    assert batched.index("Reboot (allowed by --allow-reboot)") < batched.index("Enable and start the NVIDIA daemons")
    # Whatever a task is called: only daemons.yml, which only the batched plays import, names the
    # daemons' units (a start of fabric manager under another name in the driver's role would pass the above).
    naming = [str(p.relative_to(PLAYBOOKS)) for p in sorted((PLAYBOOKS / "roles").rglob("*.yml"))
              if p.name != "daemons.yml" and re.search(r"nvidia_driver_(fabricmanager|persistenced)_service|"
                                                       r"nvidia-(fabricmanager|persistenced)\b", p.read_text())]  # fmt: skip
    assert naming == ["roles/nvidia_driver/defaults/main.yml"]


def test_no_task_ignores_its_errors_in_check_mode():
    found = [str(p.relative_to(PLAYBOOKS)) for p in PLAYBOOKS.rglob("*.yml") if "ignore_errors" in p.read_text()]
    assert found == []


@pytest.mark.parametrize("role", ROLES)
def test_role_metadata_claims_only_what_preflight_allows(role):
    meta = yaml.safe_load((PLAYBOOKS / "roles" / role / "meta" / "main.yml").read_text())
    allowed = yaml.safe_load((PLAYBOOKS / "roles/preflight/defaults/main.yml").read_text())["preflight_os_allowed"]
    assert allowed == ["ubuntu 22.04"]
    assert meta["galaxy_info"]["platforms"] == [{"name": "Ubuntu", "versions": ["jammy"]}]


@pytest.mark.parametrize(
    ("host_vars", "blocking"),
    [
        ({"xpd_gpu_vendor": "amd"}, True),
        ({"xpd_gpu_vendor": "nvidia"}, True),  # default xpd_nvidia_modules: dkms
        ({"xpd_gpu_vendor": "nvidia", "xpd_nvidia_modules": "prebuilt"}, False),
        ({"xpd_gpu_vendor": "", "xpd_nics": ["mlx5_0"], "rdma_stack": "doca"}, True),
        ({"xpd_gpu_vendor": "", "xpd_nics": ["mlx5_0"]}, False),
    ],
)
def test_secure_boot_blocks_exactly_the_hosts_that_build_unsigned_dkms_modules(tmp_path, host_vars, blocking):
    """Ansible evaluates the preflight role's rule with the shipped group_vars and these host variables
    (passed as extra vars, which win over the group_vars file as xpdctl's host variables do)."""
    play = [{
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars_files": [str(PLAYBOOKS / "group_vars/all.yml"), str(PLAYBOOKS / "roles/preflight/defaults/main.yml")],
        "tasks": [{"ansible.builtin.debug": {"msg": "BLOCKING={{ preflight_secure_boot_blocking | bool }}"}}],
    }]  # fmt: skip
    (tmp_path / "rule.yml").write_text(yaml.safe_dump(play))
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "rule.yml"), "-e", json.dumps(host_vars)],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"BLOCKING={blocking}" in done.stdout
