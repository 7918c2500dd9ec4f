"""Host facts, PCI listing and nvidia kernel-module version from the real H200 host's host-facts.txt."""

from __future__ import annotations

import pytest

from xpdctl.probes import host, pci


@pytest.fixture(scope="module")
def facts(nvidia_fixture):
    return nvidia_fixture("host-facts.txt").splitlines()


def test_os_release_and_uname(facts):
    uname = next(line for line in facts if line.startswith("Linux "))
    os_release = "\n".join(line for line in facts if "=" in line and line.split("=")[0].isupper())
    info = host.os_info(os_release, uname)
    assert info.pretty_name == "Ubuntu 24.04.3 LTS"
    assert (info.id, info.version_id) == ("ubuntu", "24.04")
    assert info.kernel == "6.18.44-fc-v657-gpu"
    assert info.arch == "x86_64"


def test_uname_without_processor_fields():
    assert host.parse_uname(
        "Linux h1 5.15.0-119-generic #129-Ubuntu SMP Fri Aug 2 19:25:20 UTC 2024 aarch64 GNU/Linux"
    ) == (
        "5.15.0-119-generic",
        "aarch64",
    )


def test_nvidia_kernel_module_version(facts):
    assert host.parse_nvidia_kernel_module("\n".join(facts[:2])) == "580.159.04"
    assert host.parse_nvidia_kernel_module("") is None


def test_pci_listing_finds_both_h200_and_nothing_else(facts):
    devices = pci.parse_sysfs_listing("\n".join(facts))
    assert len(devices) == 8
    gpus = [d for d in devices if d.kind == "gpu"]
    assert [(d.address, d.vendor, d.device_id) for d in gpus] == [
        ("0000:00:06.0", "nvidia", "0x2335"),
        ("0000:00:07.0", "nvidia", "0x2335"),
    ]
    assert all(d.kind == "other" for d in devices if d.vendor is None)


def test_pci_mi300x_is_a_processing_accelerator_and_connectx_a_nic():
    """Hand-written sysfs lines: MI300X (class 0x120000), ConnectX-7 (0x020000), an ASPEED BMC VGA."""
    devices = pci.parse_sysfs_listing(
        "0000:0c:00.0 0x1002 0x74a1 0x120000\n0000:0d:00.0 0x15b3 0x1021 0x020000\n0000:03:00.0 0x1a03 0x2000 0x030000\n"
    )
    assert [(d.vendor, d.kind) for d in devices] == [("amd", "gpu"), ("mellanox", "nic"), (None, "other")]


def test_every_gpu_vendor_profile_is_known_to_the_pci_table():
    """Vendor profiles (xpdctl/vendors) and the PCI table must agree, or GPU counts go unchecked."""
    from xpdctl.vendors import vendor_profiles

    for profile in vendor_profiles().values():
        if profile.pci_vendor_id is None:
            continue
        name, kinds = pci.VENDORS["0x" + profile.pci_vendor_id.lower()]
        assert name == profile.name
        assert "gpu" in kinds.values()
