"""Targets from the shipped inventories and render's real output."""

from __future__ import annotations

from dataclasses import replace

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.observe.cluster import observe_cluster
from xpdctl.observe.targets import targets_from
from xpdctl.paths import data_dir
from xpdctl.plan import build_plan
from xpdctl.render import MANIFEST, render_files, write_tree
from xpdctl.ssh.transport import LocalShellTransport


@pytest.fixture(scope="module")
def lab():
    loaded = load_inventory(data_dir("inventory") / "lab.yaml")
    return loaded, render_files(build_plan(loaded, {}))


def test_lab_targets(lab):
    loaded, files = lab
    cluster, targets = targets_from(loaded.inventory, files)
    assert cluster == "lab"
    by_name = {t.name: t for t in targets}
    h100 = by_name["h100-01"]
    assert (h100.address, h100.ssh.user, h100.ssh.key) == ("10.0.0.11", "ubuntu", "~/.ssh/id_ed25519")
    assert (h100.gpu_pci_vendor, h100.gpu_count, h100.nics) == ("10de", 8, ["mlx5_0"])
    assert [(s.role, s.unit, s.url) for s in h100.services] == [
        ("prefill", "xpd-lab-prefill-0.service", "http://10.0.0.11:8100"),
        ("kv-agent", "xpd-lab-kv-agent.service", "http://10.0.0.11:8788"),
    ]
    assert "/etc/systemd/system/xpd-lab-prefill-0.service" in h100.expected_files
    assert all(len(f.sha256) == 64 for f in h100.expected_files.values())
    assert h100.expected_files["/etc/xpdctl/xpd-lab-prefill-0.env"].mode == 0o600
    assert h100.owned_globs == ["/etc/systemd/system/xpd-lab-*", "/etc/xpdctl/*"]
    assert by_name["mi300x-01"].gpu_pci_vendor == "1002"
    gateway = by_name["gw-01"]
    assert gateway.gpu_pci_vendor is None
    (router,) = gateway.services
    assert router.role == "router" and router.admin_token is None


def test_router_admin_token_comes_from_the_rendered_config(lab):
    loaded, files = lab
    config = "hosts/gw-01/etc/xpdctl/router.yaml"
    with_token = {**files, config: replace(files[config], content=files[config].content + "admin:\n  token: s3cret\n")}
    _, targets = targets_from(loaded.inventory, with_token)
    (router,) = next(t for t in targets if t.name == "gw-01").services
    assert router.admin_token == "s3cret"


def test_render_output_without_manifest(lab):
    loaded, files = lab
    with pytest.raises(InputError, match="xpdctl render"):
        targets_from(loaded.inventory, {k: v for k, v in files.items() if k != MANIFEST})


@pytest.mark.parametrize("from_dir", [False, True], ids=["render-now", "rendered-dir"])
def test_observe_cluster_checks_every_rendered_file(tmp_path, from_dir):
    """The local inventory observed through the local-shell transport, against render's output now or
    an earlier `xpdctl render -o DIR`; whatever runs on this machine's ports, every rendered file is
    compared and every unit and engine is reported."""
    loaded = load_inventory(data_dir("inventory") / "local.yaml")
    rendered_dir = None
    if from_dir:
        rendered_dir = tmp_path / "out"
        write_tree(render_files(build_plan(loaded, {})), rendered_dir)
    status = observe_cluster(loaded, rendered_dir, transport=LocalShellTransport(), http_timeout_s=2)
    (host,) = status.hosts
    assert (status.cluster, host.name, host.reachable, host.drift_checked) == ("local", "local", True, True)
    expected = {path for path in render_files(build_plan(loaded, {})) if path.startswith("hosts/local/")}
    assert {"hosts/local" + entry.path for entry in host.drift if entry.state != "extra"} <= expected
    assert {u.role for u in host.units} == {"prefill", "decode", "kv-agent", "router"}
    assert {e.role for e in host.engines} == {"prefill", "decode"}


def test_engines_are_probed_with_their_internal_key(lab):
    loaded, _ = lab
    files = render_files(build_plan(loaded, {"XPDCTL_ENGINE_API_KEY": "engine-key"}))
    _, targets = targets_from(loaded.inventory, files)
    keys = {s.name: s.api_key for t in targets for s in t.services}
    assert keys == {"xpd-lab-prefill-0": "engine-key", "xpd-lab-decode-0": "engine-key",
                    "xpd-lab-kv-agent": None, "xpd-lab-router": None}
