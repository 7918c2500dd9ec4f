"""keepalived configs as render writes them for router.vip (keepalived/<host>.conf): one VRRP instance
per router host, the first listed preferred, unicast adverts to the others, the router's /health as
the health check; the real keepalived parses them (`keepalived -t`)."""

import shutil
import subprocess

import pytest
import yaml

from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan
from xpdctl.render import render_files


@pytest.fixture
def files(write_inventory, lab_data):
    lab_data["router"]["hosts"] = ["gw-01", "h100-01"]
    lab_data["router"]["vip"] = {"address": "10.0.0.100", "network": "10.0.0.0/24", "interface": "eth0", "vrid": 7}
    return render_files(build_plan(load_inventory(write_inventory(lab_data)), {}))


def test_each_router_host_gets_a_vrrp_instance_and_clients_the_vip(files):
    first, second = files["keepalived/gw-01.conf"].content, files["keepalived/h100-01.conf"].content
    assert "priority 150" in first and "priority 140" in second
    assert "unicast_src_ip 10.0.0.5" in first and "\t\t10.0.0.11\n" in first
    assert "unicast_src_ip 10.0.0.11" in second and "\t\t10.0.0.5\n" in second
    for conf in (first, second):
        assert "10.0.0.100/24 dev eth0" in conf and "virtual_router_id 7" in conf
        assert 'script "/usr/bin/curl -sS -o /dev/null --max-time 1 http://127.0.0.1:8000/health"' in conf
    assert "keepalived/mi300x-01.conf" not in files
    assert yaml.safe_load(files["manifest.json"].content)["router"]["url"] == "http://10.0.0.100:8000"


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="needs keepalived (install.sh --test)")
def test_the_real_keepalived_parses_them(files, tmp_path):
    for name in ("gw-01", "h100-01"):
        path = tmp_path / f"{name}.conf"
        path.write_text(files[f"keepalived/{name}.conf"].content)
        done = subprocess.run(["keepalived", "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
    path.write_text(path.read_text().replace("virtual_router_id 7", "virtual_router_id 700"))
    done = subprocess.run(["keepalived", "-t", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
