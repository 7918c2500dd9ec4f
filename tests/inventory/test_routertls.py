"""router.tls in the inventory: `tls generate` makes a CA and a certificate for the router's addresses,
`check` refuses a pair the router or its clients would refuse (at the inventory line naming the file),
render puts the pair beside the router's config, and a router started from that rendered config
serves HTTPS that xpdctl's own probe verifies against the cluster's CA."""

import json
import stat
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from xpdctl.cli import cli
from problem_lines import details, line_of

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.inventory.routertls import client_context
from xpdctl.plan import build_plan
from xpdctl.render import render_files, write_tree
from xpdctl.verify.health import probe

TLS = {"cert_file": "tls/router.crt", "key_file": "tls/router.key", "ca_file": "tls/ca.pem"}


@pytest.fixture
def tls_inventory(write_inventory, lab_data):
    """tls_inventory(listen=None, **tls) -> inventory path with router.tls (files not made yet)."""

    def make(listen: str | None = None, **tls):
        lab_data["router"]["tls"] = {**TLS, **tls}
        if listen:
            lab_data["router"]["listen"] = listen
        return write_inventory(lab_data)

    return make


def _generate(path, *extra) -> dict:
    result = CliRunner().invoke(cli, ["tls", "generate", "-i", str(path), "-o", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_generated_pair_is_rendered_beside_the_router_config(tls_inventory, tmp_path):
    path = tls_inventory()
    made = _generate(path)
    assert made["names"] == ["10.0.0.5"]  # gw-01's address in lab.yaml
    for key in ("key_file", "ca_key_file"):
        assert stat.S_IMODE((tmp_path / "tls" / made[key].rsplit("/", 1)[1]).stat().st_mode) == 0o600
    plan = build_plan(load_inventory(path), {})
    files = render_files(plan)
    config = yaml.safe_load(files["hosts/gw-01/etc/xpdctl/router.yaml"].content)
    cert, key = config["tls"]["cert_file"], config["tls"]["key_file"]
    assert "/" not in cert and "/" not in key  # relative: beside the config on the host and in a local run
    assert files[f"hosts/gw-01/etc/xpdctl/{cert}"].content == (tmp_path / "tls/router.crt").read_text()
    assert files[f"hosts/gw-01/etc/xpdctl/{key}"].mode == 0o600
    manifest = json.loads(files["manifest.json"].content)
    assert manifest["router"]["url"] == "https://10.0.0.5:8000"
    assert manifest["router"]["ca_pem"] == (tmp_path / "tls/ca.pem").read_text()
    router = next(s for s in manifest["hosts"]["gw-01"]["services"] if s["role"] == "router")
    assert router["url"] == "https://10.0.0.5:8000"


def test_generate_never_overwrites(tls_inventory):
    path = tls_inventory()
    _generate(path)
    result = CliRunner().invoke(cli, ["tls", "generate", "-i", str(path)])
    assert isinstance(result.exception, InputError)  # the CLI's main prints it on one line, exit 2
    assert "already exist; generate writes new files only" in result.exception.message


def test_a_certificate_not_naming_the_router_address_is_refused_at_its_line(tls_inventory, lab_data):
    path = tls_inventory()
    _generate(path)
    lab_data["hosts"][[h["name"] for h in lab_data["hosts"]].index("gw-01")]["address"] = "10.0.0.99"
    path.write_text(yaml.safe_dump(lab_data, sort_keys=False))
    (detail,) = details(path)
    assert detail.startswith(f"{path}:{line_of(path, 'cert_file:')}: router.tls.cert_file: ")
    assert "names 10.0.0.5, not 10.0.0.99, where clients reach the router" in detail


def test_bad_files_are_each_reported_with_what_to_do(tls_inventory, tmp_path):
    path = tls_inventory()
    _generate(path)
    key = tmp_path / "tls/router.key"
    key.chmod(0o644)
    (detail,) = details(path)
    assert detail.startswith(f"{path}:{line_of(path, 'key_file:')}: router.tls.key_file: ")
    assert detail.endswith(f"is readable by others (mode 0644); run chmod 600 {key}")

    key.chmod(0o600)
    (tmp_path / "tls/router.crt").write_text("not a certificate\n")
    (detail,) = details(path)
    assert "router.tls.cert_file:" in detail and "holds no PEM certificate" in detail

    other = tls_inventory(cert_file="other/router.crt", key_file="other/router.key", ca_file="other/ca.pem")
    _generate(other)  # a second CA and pair
    mixed = tls_inventory(cert_file="other/router.crt", key_file="tls/router.key", ca_file="tls/ca.pem")
    found = details(mixed)
    assert any("router.tls.key_file:" in d and "is not the key of" in d for d in found)
    assert any("router.tls.ca_file:" in d and "is not signed by the CA in" in d for d in found)

    missing = tls_inventory(cert_file="nowhere.crt")
    (detail,) = details(missing)
    assert "router.tls.cert_file: cannot read" in detail and "xpdctl tls generate" in detail


def test_router_from_the_rendered_config_serves_https_verified_by_the_clusters_ca(tls_inventory, tmp_path,
                                                                                  free_port_block):
    path = tls_inventory(listen="127.0.0.1")
    assert _generate(path)["names"] == ["127.0.0.1"]
    loaded = load_inventory(path)
    out = tmp_path / "rendered"
    write_tree(render_files(build_plan(loaded, {})), out)
    port = free_port_block(1)
    router = subprocess.Popen([sys.executable, "-m", "xpdctl", "router", "--config",
                               str(out / "hosts/gw-01/etc/xpdctl/router.yaml"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url, context = f"https://127.0.0.1:{port}", client_context(loaded.router_tls.ca_pem)
        deadline = time.monotonic() + 30
        while (answer := probe(url, context=context)) in ("refused", "timeout") and time.monotonic() < deadline:
            time.sleep(0.2)
        # No engine answers (lab's addresses): the router is up but has no usable pair, over verified TLS.
        assert answer in ("healthy", "HTTP 503"), answer
        assert "CERTIFICATE_VERIFY_FAILED" in probe(url)  # the system's CAs do not know the cluster's
    finally:
        router.terminate()
        router.wait(10)
