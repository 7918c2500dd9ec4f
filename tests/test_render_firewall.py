"""The host firewall's rules as render writes them (firewall/<host>.nft), loaded by the real nft in a
network namespace of their own: accepted by `nft -c`, loaded twice (the second replaces the first
atomically), and another table (Docker's, say) left as it was."""

import os
import shutil
import subprocess

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.inventory.firewall import source_address
from xpdctl.plan import build_plan
from xpdctl.render import render_files


@pytest.fixture
def rules(write_inventory, lab_data) -> dict[str, str]:
    here = source_address("10.0.0.5", 22)  # this machine, as the lab's hosts would see it
    lab_data["firewall"] = {"control": ["192.0.2.0/28", "192.0.2.7"] + ([here] if here else []),
                            "prometheus": ["10.0.1.9"], "open_ports": [9100]}
    files = render_files(build_plan(load_inventory(write_inventory(lab_data)), {}))
    return {rel.split("/", 1)[1].removesuffix(".nft"): f.content for rel, f in files.items()
            if rel.startswith("firewall/")}


def test_every_host_gets_rules_and_only_router_hosts_open_the_routers_port(rules):
    assert set(rules) == {"gw-01", "h100-01", "mi300x-01"}
    assert "tcp dport 8000 ip saddr @clients4 accept" in rules["gw-01"]
    assert "@clients" not in rules["h100-01"].split("chain input")[1]
    # The engine host's own ports are what Prometheus may scrape; the cluster reaches everything.
    assert "tcp dport { 5600, 8100, 8788 } ip saddr @prometheus4 accept" in rules["h100-01"]
    trusted = rules["h100-01"].split("set trusted4")[1].split("}")[0]
    assert "10.0.0.5, 10.0.0.11, 10.0.0.21" in trusted and "192.0.2.0/28" in trusted
    assert "192.0.2.7" not in trusted  # inside 192.0.2.0/28: merged, as nft refuses overlapping intervals
    assert "tcp dport { 9100 } accept" in rules["mi300x-01"]


NFT = shutil.which("nft")


def _in_netns(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--net", "sh", "-ec", script], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(NFT is None or os.geteuid() != 0, reason="needs nft (install.sh --test) and root for a netns")
def test_the_real_nft_loads_the_rules_twice_and_leaves_other_tables_alone(rules, tmp_path):
    path = tmp_path / "gw-01.nft"
    path.write_text(rules["gw-01"])
    done = _in_netns(
        "nft add table inet docker_like; nft add chain inet docker_like c '{ type filter hook forward priority 0; }';"
        f"nft -c -f {path}; nft -f {path}; nft -f {path}; nft -j list ruleset")
    assert done.returncode == 0, done.stderr
    listed = done.stdout
    assert listed.count('"table": {"family": "inet", "name": "xpdctl"') == 1
    assert '"name": "docker_like"' in listed  # another table survives both loads
    chain = _in_netns(f"nft -f {path}; nft list chain inet xpdctl input").stdout
    assert chain.index("ct state established,related accept") < chain.index("ip saddr @trusted4 accept") \
        < chain.index("meta l4proto tcp reject with tcp reset")


@pytest.mark.skipif(NFT is None or os.geteuid() != 0, reason="needs nft (install.sh --test) and root for a netns")
def test_rules_nft_refuses_are_refused_by_nft_c(rules, tmp_path):
    path = tmp_path / "bad.nft"
    path.write_text(rules["gw-01"].replace("flags interval", "flags intervall", 1))
    done = _in_netns(f"nft -c -f {path}")
    assert done.returncode != 0 and "intervall" in done.stderr
