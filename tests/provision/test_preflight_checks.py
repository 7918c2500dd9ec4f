"""Preflight judgement: raw host facts (as the xpd_host_facts module returns them) against expectations,
by the preflight role's filter plugin (loaded from its file: it is not part of xpdctl, so that the
playbooks run without it), read back as xpdctl's HostReport.

The PCI listings are in the sysfs format of tests/fixtures/nvidia-h200-x2/host-facts.txt; the H200 lines are
copied from that real capture, the H100/MI300X/NVSwitch lines are hand-written from the PCI IDs.
"""

from __future__ import annotations

import ast
import importlib.util
import sys

import pytest
import yaml

from xpdctl.paths import data_dir
from xpdctl.provision.preflight_checks import HostReport

ROLE = data_dir("playbooks") / "roles" / "preflight"
_spec = importlib.util.spec_from_file_location("xpd_preflight_plugin", ROLE / "filter_plugins" / "preflight.py")
plugin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plugin)
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def evaluate(facts: dict, expectations: dict) -> HostReport:
    return HostReport.model_validate(plugin.evaluate(facts, expectations))

UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'
H100 = [f"0000:{0x18 + i:02x}:00.0 0x10de 0x2330 0x030200" for i in range(8)]
NVSWITCH = [f"0000:{0xa0 + i:02x}:00.0 0x10de 0x22a3 0x068000" for i in range(4)]
MI300X = [f"0000:{0x05 + i:02x}:00.0 0x1002 0x74a1 0x120000" for i in range(8)]
AMD_CHIPSET = ["0000:00:00.0 0x1022 0x14a4 0x060000", "0000:00:14.0 0x1022 0x790b 0x0c0500"]
H200_REAL = ["0000:00:06.0 0x10de 0x2335 0x030200", "0000:00:07.0 0x10de 0x2335 0x030200"]
GIB = 1024**3
MODELS = {"H100-SXM": ["0x2330"], "H200-SXM": ["0x2335"], "MI300X": ["0x74a1"]}


def facts(**overrides) -> dict:
    base = {
        "os_release": UBUNTU,
        "kernel": "5.15.0-119-generic",
        "headers": {"installed": True, "package": "linux-headers-5.15.0-119-generic"},
        "pci": "\n".join(H100 + NVSWITCH),
        "nics": {"mlx5_0": {"kind": "rdma", "ports": {"1": "4: ACTIVE"}}},
        "disk": [
            {"path": "/var/lib/docker", "measured": "/var/lib", "device": 1, "free_bytes": 500 * GIB},
            {"path": "/var/lib/xpdctl/models/m", "measured": "/var/lib", "device": 1, "free_bytes": 500 * GIB},
        ],
        "secure_boot": "disabled",
        "listening": [22],
        "units": {},
    }
    base.update(overrides)
    return base


def expect(**overrides) -> dict:
    base = {
        "os_allowed": ["ubuntu 22.04"],
        "gpu_vendor": "nvidia",
        "gpu_model": "H100-SXM",
        "gpu_count": 8,
        "gpu_models": MODELS,
        "gpu_vendor_ids": DEFAULTS["preflight_gpu_vendor_ids"],
        "gpu_classes": DEFAULTS["preflight_gpu_classes"],
        "nics": ["mlx5_0:1"],
        "disk": [{"path": "/var/lib/docker", "gib": 100}, {"path": "/var/lib/xpdctl/models/m", "gib": 150}],
        "secure_boot_blocking": False,
        "ports": [{"name": "xpd-lab-prefill-0", "unit": "/etc/systemd/system/xpd-lab-prefill-0.service", "port": 8100}],
    }
    base.update(overrides)
    return base


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def test_a_healthy_h100_host_passes_every_check():
    report = evaluate(facts(), expect())
    assert report.ok
    assert [c.status for c in report.checks] == ["ok"] * 7
    # NVSwitch bridges share NVIDIA's vendor ID but are not GPUs.
    assert check(report, "gpus").detail == "found 8 x nvidia (0x2330) = 8 x nvidia H100-SXM"


def test_gpu_count_that_differs_from_the_inventory_fails_with_both_numbers():
    report = evaluate(facts(pci="\n".join(H100[:7] + NVSWITCH)), expect())
    gpus = check(report, "gpus")
    assert not report.ok and gpus.status == "fail"
    assert "found 7 x nvidia" in gpus.detail and "8 x nvidia H100-SXM" in gpus.detail


def test_mi300x_is_found_by_its_processing_accelerator_class():
    report = evaluate(facts(pci="\n".join(AMD_CHIPSET + MI300X)), expect(gpu_vendor="amd", gpu_model="MI300X"))
    assert check(report, "gpus").status == "ok"
    assert "8 x amd (0x74a1)" in check(report, "gpus").detail


def test_gpus_of_another_model_fail_even_when_the_count_matches():
    report = evaluate(facts(pci="\n".join(H200_REAL)), expect(gpu_count=2))
    assert check(report, "gpus").status == "fail"
    assert "0x2335" in check(report, "gpus").detail and "fix gpu.model" in check(report, "gpus").detail


def test_a_model_without_pci_ids_is_checked_by_vendor_and_count_only():
    report = evaluate(facts(pci="\n".join(H200_REAL)), expect(gpu_model="GH200", gpu_count=2))
    assert report.ok and check(report, "gpus").status == "warn"


def test_a_host_without_gpus_expects_none():
    report = evaluate(facts(pci="\n".join(AMD_CHIPSET)), expect(gpu_vendor="", gpu_model="", gpu_count=0))
    assert check(report, "gpus").status == "ok"


@pytest.mark.parametrize(
    "nics, status, words",
    [
        ({"mlx5_0": {"kind": "rdma", "ports": {"1": "2: INIT"}}}, "fail", "mlx5_0 port 1 2: INIT"),
        ({}, "fail", "mlx5_0 missing"),
        ({"mlx5_0": {"kind": "rdma", "ports": {}}}, "fail", "no ports"),
        ({"mlx5_0": {"kind": "net", "ports": {"1": "up"}}}, "ok", "mlx5_0 up"),
        ({"mlx5_0": {"kind": "net", "ports": {"1": "lowerlayerdown"}}}, "fail", "lowerlayerdown"),
    ],
)
def test_nic_presence_and_port_state(nics, status, words):
    result = check(evaluate(facts(nics=nics), expect()), "nics")
    assert result.status == status and words in result.detail


def test_paths_on_one_filesystem_add_up():
    small = [
        {"path": "/var/lib/docker", "measured": "/var/lib", "device": 1, "free_bytes": 200 * GIB},
        {"path": "/var/lib/xpdctl/models/m", "measured": "/var/lib", "device": 1, "free_bytes": 200 * GIB},
    ]
    result = check(evaluate(facts(disk=small), expect()), "disk")
    assert result.status == "fail" and "need 250 GiB" in result.detail and "200 GiB free" in result.detail
    split = [dict(small[0]), dict(small[1], device=2, measured="/data")]
    assert check(evaluate(facts(disk=split), expect()), "disk").status == "ok"


def test_secure_boot_blocks_unsigned_dkms_vendors_and_warns_for_others():
    assert check(evaluate(facts(secure_boot="enabled"), expect(secure_boot_blocking=True)), "secure_boot").status == "fail"
    assert check(evaluate(facts(secure_boot="enabled"), expect()), "secure_boot").status == "warn"
    assert check(evaluate(facts(secure_boot="no-uefi"), expect(secure_boot_blocking=True)), "secure_boot").status == "ok"


def test_a_port_held_by_this_clusters_running_service_is_fine_but_a_stranger_fails():
    ours = facts(listening=[22, 8100], units={"xpd-lab-prefill-0.service": "active"})
    assert check(evaluate(ours, expect()), "ports").status == "ok"
    stranger = facts(listening=[22, 8100], units={"xpd-lab-prefill-0.service": "inactive"})
    result = check(evaluate(stranger, expect()), "ports")
    assert result.status == "fail" and "8100" in result.detail


def test_kernel_headers_installed_installable_or_missing():
    installable = facts(headers={"installed": False, "package": "linux-headers-x", "candidate": "5.15.0-119.129"})
    assert check(evaluate(installable, expect()), "kernel_headers").status == "ok"
    missing = facts(headers={"installed": False, "package": "linux-headers-x", "candidate": None, "lists_refreshed": True})
    assert check(evaluate(missing, expect()), "kernel_headers").status == "fail"
    # Stale lists (--check does not refresh them) cannot prove the headers missing.
    unknown = facts(headers={"installed": False, "package": "linux-headers-x", "candidate": None})
    assert check(evaluate(unknown, expect()), "kernel_headers").status == "warn"
    # A router host builds no driver.
    assert check(evaluate(missing, expect(gpu_vendor="", gpu_count=0)), "kernel_headers").status == "ok"


def test_os_release_outside_the_allowed_list_fails_and_says_how_to_allow_it():
    debian = facts(os_release='ID=debian\nVERSION_ID="12"\n')
    result = check(evaluate(debian, expect()), "os")
    assert result.status == "fail" and "debian 12" in result.detail and "preflight_os_allowed" in result.detail
    assert check(evaluate(debian, expect(os_allowed=["debian 12"])), "os").status == "ok"


def test_the_roles_gpu_vendor_ids_are_the_vendor_profiles():
    from xpdctl.vendors import vendor_profiles

    profiles = {name: f"0x{p.pci_vendor_id}" for name, p in vendor_profiles().items() if p.pci_vendor_id}
    assert DEFAULTS["preflight_gpu_vendor_ids"] == profiles


def test_the_filter_plugin_imports_only_the_standard_library():
    """So `ansible-playbook site.yml` runs on a controller without xpdctl (or pydantic)."""
    tree = ast.parse((ROLE / "filter_plugins" / "preflight.py").read_text())
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
