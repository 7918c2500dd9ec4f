"""firewall: in the inventory: bad addresses at their line, and a control list that would cut this
machine off the hosts refused at `check` (this machine's own routing table decides the address)."""

import pytest
import yaml

from problem_lines import details, line_of

from xpdctl.inventory import load_inventory
from xpdctl.inventory.firewall import source_address
from xpdctl.paths import data_dir


@pytest.fixture
def local_data() -> dict:
    return yaml.safe_load((data_dir("inventory") / "local.yaml").read_text())


def test_addresses_that_are_not_addresses_are_reported_at_their_line(write_inventory, local_data):
    local_data["firewall"] = {"control": ["127.0.0.1"], "clients": ["10.0.0.5/24", "10.0.0.0/8"],
                              "prometheus": ["prom-01"], "open_ports": [9100, 70000]}
    path = write_inventory(local_data)
    found = details(path)
    assert found[0].startswith(f"{path}:{line_of(path, '10.0.0.5/24')}: firewall.clients[0]: '10.0.0.5/24' is not "
                                 "an address or network (10.0.0.5/24 has host bits set)")
    assert any("firewall.prometheus[0]: 'prom-01' is not an address or network" in d for d in found)
    assert any("firewall.open_ports[1]: 70000 is not a TCP port" in d for d in found)


def test_a_control_list_without_this_machine_is_refused_with_the_address_to_add(write_inventory, local_data):
    assert source_address("127.0.0.1", 22) == "127.0.0.1"
    local_data["firewall"] = {"control": ["10.9.9.9"]}
    local_data["hosts"][0]["address"] = "127.0.0.2"  # a loopback address the cluster's trusted list does not hold
    path = write_inventory(local_data)
    (detail,) = details(path)
    assert detail == (f"{path}:{line_of(path, 'control:')}: firewall.control: this machine reaches local (127.0.0.2) "
                      "from 127.0.0.1, which control does not list: the firewall would cut xpdctl off the hosts; "
                      "add 127.0.0.1 (or its network)")
    local_data["firewall"] = {"control": ["127.0.0.0/8"]}
    assert load_inventory(write_inventory(local_data)).inventory.firewall.control == ["127.0.0.0/8"]


def test_host_names_cannot_be_matched_by_the_rules(write_inventory, local_data):
    local_data["firewall"] = {"control": ["127.0.0.1"]}
    local_data["hosts"][0]["address"] = "localhost"
    path = write_inventory(local_data)
    assert any("hosts[0].address: 'localhost' is a name; the firewall's rules match addresses" in d
               for d in details(path))
