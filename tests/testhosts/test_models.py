"""Fleet layout decisions that need no root: --gpus parsing, addresses, names."""

from __future__ import annotations

import pytest

from xpdctl.errors import InputError
from xpdctl.testhosts.fleet import plan
from xpdctl.testhosts.models import GpuDecl


def test_gpus_list_per_host_in_order():
    decls = GpuDecl.parse_list("nvidia:8, amd:8:MI325X,none")
    assert decls == [GpuDecl(vendor="nvidia", count=8), GpuDecl(vendor="amd", count=8, model="MI325X"), None]


@pytest.mark.parametrize("text", ["nvidia", "nvidia:0", "nvidia:x", "nvidia:1:a:b"])
def test_gpus_list_rejects_malformed_entries(text):
    with pytest.raises(InputError, match="VENDOR:COUNT"):
        GpuDecl.parse_list(text)


def test_plan_names_addresses_links_and_nics():
    record = plan("lab", 3, [GpuDecl(vendor="nvidia", count=2), GpuDecl(vendor="amd", count=2)], 2, "10.88.5.0/24")
    assert [(h.name, h.address, h.netns, h.veth) for h in record.hosts] == [
        ("lab-1", "10.88.5.11", "lab-1", "labv1"),
        ("lab-2", "10.88.5.12", "lab-2", "labv2"),
        ("lab-3", "10.88.5.13", "lab-3", "labv3"),
    ]
    assert [h.nics for h in record.hosts] == [["mlx5_0", "mlx5_1"], ["mlx5_0", "mlx5_1"], []]
    assert (record.bridge, record.gateway, record.prefix_len) == ("labbr0", "10.88.5.1", 24)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Lab", 1, [], 1, "10.88.5.0/24"), "lowercase"),
        (("toolongname", 1, [], 1, "10.88.5.0/24"), "1-8"),
        (("lab", 1, [None, None], 1, "10.88.5.0/24"), "one entry per host"),
        (("lab", 1, [], 1, "10.88.5.0/30"), "too small"),
        (("lab", 1, [], 1, "not-a-net"), "not a network"),
        (("lab", 1, [GpuDecl(vendor="intel", count=1)], 1, "10.88.5.0/24"), "cannot simulate vendor 'intel'"),
        (("lab", 1, [GpuDecl(vendor="amd", count=1, model="H100-SXM")], 1, "10.88.5.0/24"), "MI300X"),
    ],
)
def test_plan_rejects_what_cannot_be_built(args, message):
    with pytest.raises(InputError, match=message):
        plan(*args)
