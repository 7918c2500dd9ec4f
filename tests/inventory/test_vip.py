"""router.vip: two or more router hosts share one address (VRRP); bad input at its line, nothing else
changed; the address clients use is the virtual one, and the router's certificate must name it."""

import pytest
from problem_lines import details, line_of

from xpdctl.inventory import load_inventory
from xpdctl.inventory.topology import router_addresses


@pytest.fixture
def two_routers(lab_data):
    """lab.yaml with gw-01 and h100-01 (10.0.0.5, 10.0.0.11) as router hosts behind 10.0.0.100."""
    lab_data["router"]["hosts"] = ["gw-01", "h100-01"]
    lab_data["router"]["vip"] = {"address": "10.0.0.100", "network": "10.0.0.0/24", "interface": "eth0"}
    return lab_data


def test_two_routers_with_a_vip_are_accepted(write_inventory, two_routers):
    inv = load_inventory(write_inventory(two_routers)).inventory
    assert router_addresses(inv) == ["10.0.0.100", "10.0.0.5", "10.0.0.11"]


@pytest.mark.parametrize("vip, field, message", [
    ({"address": "10.0.1.100"}, "router.vip.address",
     "10.0.1.100 is outside router.vip.network 10.0.0.0/24: the router hosts could hold it"),
    ({"address": "10.0.0.255"}, "router.vip.address", "10.0.0.255 is the network's own or broadcast address"),
    ({"address": "10.0.0.21"}, "router.vip.address", "10.0.0.21 is mi300x-01's own address"),
    ({"network": "10.0.0.0/30", "address": "10.0.0.2"}, "router.hosts[1]",
     "h100-01 (10.0.0.11) is not in router.vip.network 10.0.0.0/30: VRRP needs every router host"),
    ({"network": "10.0.0.1/24"}, "router.vip.network", "'10.0.0.1/24' is not a network"),
    ({"address": "vip.example"}, "router.vip.address", "'vip.example' is not an IP address"),
])
def test_bad_vips_are_refused_at_their_line(write_inventory, two_routers, vip, field, message):
    two_routers["router"]["vip"].update(vip)
    path = write_inventory(two_routers)
    found = details(path)
    assert any(f": {field}: {message}" in d for d in found), found


def test_a_vip_needs_its_interface(write_inventory, two_routers):
    del two_routers["router"]["vip"]["interface"]
    path = write_inventory(two_routers)
    (found,) = details(path)
    assert found.startswith(f"{path}:{line_of(path, 'vip:')}: router.vip.interface: ")
