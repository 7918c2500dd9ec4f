"""The one GPU catalog: what it holds, that nothing else keeps a copy, and that `check` rejects a GPU it lacks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from xpdctl.errors import InputError
from xpdctl.gpu_catalog import catalog_path, find_gpu, gpu_catalog
from xpdctl.inventory import load_inventory
from xpdctl.perfmodel.specs import hardware_profiles

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["H100-SXM", "H200-SXM", "B200", "MI300X", "MI325X", "MI355X"]


def test_the_required_models_have_performance_figures_with_sources():
    catalog = gpu_catalog()
    for name in REQUIRED:
        entry = catalog[name]
        assert entry["perf"] and name in hardware_profiles()
        assert entry["sources"]["perf"] and entry["sources"]["pci_devices"]
    for name, entry in catalog.items():
        assert entry["pci_devices"] and all(d.startswith("0x") for d in entry["pci_devices"]), name
        assert all(str(text).strip() for text in entry["sources"].values()), name


def test_names_and_aliases_resolve_to_the_catalog_name():
    assert find_gpu("NVIDIA H100 80GB HBM3") == find_gpu("h100") == "H100-SXM"
    assert find_gpu("AMD Instinct MI300X") == "MI300X"
    assert find_gpu("H300") is None


def test_no_other_file_keeps_gpu_pci_ids_or_figures():
    """The catalog replaced four copies (preflight defaults, nvidia_driver defaults, the test hosts' and the
    performance model's YAML): a PCI device ID of a catalog GPU appears in no other shipped file."""
    shipped = subprocess.run(["git", "ls-files", "xpdctl", "playbooks", "templates"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    ids = {d for entry in gpu_catalog().values() for d in entry["pci_devices"]}
    holders = [f for f in shipped if (REPO / f).is_file() and any(i in (REPO / f).read_text(errors="ignore") for i in ids)]
    assert holders == [str(catalog_path().relative_to(REPO))]


def test_an_engine_host_with_an_unknown_gpu_model_is_a_check_error(lab_data, write_inventory):
    lab_data["hosts"][0]["gpu"]["model"] = "H300-SXM"
    with pytest.raises(InputError) as info:
        load_inventory(write_inventory(lab_data))
    detail = "\n".join(info.value.details)
    assert "unknown nvidia GPU model 'H300-SXM'; use one of H100-SXM, H100-PCIE, H100-NVL, A100-SXM, H200-SXM, B200" in detail
    assert "gpu_catalog.yml" in detail


def test_a_gpu_of_another_vendor_is_a_check_error(lab_data, write_inventory):
    lab_data["hosts"][0]["gpu"]["model"] = "MI300X"  # on the nvidia host
    with pytest.raises(InputError) as info:
        load_inventory(write_inventory(lab_data))
    assert "GPU model 'MI300X' is not a nvidia GPU" in "\n".join(info.value.details)


def test_aliases_and_hosts_outside_the_catalogs_vendors_pass(lab_data, write_inventory):
    lab_data["hosts"][0]["gpu"]["model"] = "NVIDIA H100 80GB HBM3"
    assert load_inventory(write_inventory(lab_data)).inventory
    assert load_inventory(REPO / "inventory" / "local.yaml").inventory  # vendor cpu: no catalog entry needed
