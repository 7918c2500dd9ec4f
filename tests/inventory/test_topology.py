from xpdctl.inventory import load_inventory
from xpdctl.inventory.topology import place, ssh_of


def _placements(inventory):
    return [(p.role, p.index, p.host, p.gpus, p.port, p.side_channel_port) for p in place(inventory)]


def test_host_in_both_pools_splits_its_gpus_and_side_channel_ports():
    inv = load_inventory("inventory/local.yaml").inventory
    assert _placements(inv) == [("prefill", 0, "local", (0,), 8100, 5600), ("decode", 0, "local", (1,), 8200, 5601)]


def test_several_instances_per_host_get_their_own_gpus_and_ports(write_inventory, lab_data):
    lab_data["pools"]["prefill"]["tensor_parallel"] = 4
    lab_data["pools"]["decode"]["tensor_parallel"] = 4
    inv = load_inventory(write_inventory(lab_data)).inventory
    assert _placements(inv) == [
        ("prefill", 0, "h100-01", (0, 1, 2, 3), 8100, 5600),
        ("prefill", 1, "h100-01", (4, 5, 6, 7), 8101, 5601),
        ("decode", 0, "mi300x-01", (0, 1, 2, 3), 8200, 5600),
        ("decode", 1, "mi300x-01", (4, 5, 6, 7), 8201, 5601),
    ]


def test_pool_spanning_hosts_numbers_instances_across_the_pool(write_inventory, lab_data):
    lab_data["hosts"].append({"name": "mi300x-02", "address": "10.0.0.22", "vendor": "amd",
                              "gpu": {"model": "MI300X", "count": 8}})
    lab_data["pools"]["decode"]["hosts"].append("mi300x-02")
    lab_data["pools"]["decode"]["port"] = 9000
    lab_data["kv"]["side_channel_port"] = 7000
    inv = load_inventory(write_inventory(lab_data)).inventory
    assert _placements(inv)[1:] == [
        ("decode", 0, "mi300x-01", (0, 1, 2, 3, 4, 5, 6, 7), 9000, 7000),
        ("decode", 1, "mi300x-02", (0, 1, 2, 3, 4, 5, 6, 7), 9000, 7000),
    ]


def test_ssh_settings_merge_host_over_defaults(write_inventory, lab_data):
    lab_data["hosts"][1]["ssh"] = {"port": 2222}
    inv = load_inventory(write_inventory(lab_data)).inventory
    h100, mi300x = inv.hosts[0], inv.hosts[1]
    assert (ssh_of(inv, h100).user, ssh_of(inv, h100).port) == ("ubuntu", 22)
    assert (ssh_of(inv, mi300x).user, ssh_of(inv, mi300x).key, ssh_of(inv, mi300x).port) == (
        "ubuntu", "~/.ssh/id_ed25519", 2222
    )
