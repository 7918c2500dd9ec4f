"""The live tree (files on the hosts, in render's tree shape) and its diff against the plan, with
render's own diff (xpdctl.diff). Hosts are this machine through per-host root folders (local-shell
transport); the same fetch over SSH is covered in test_testhosts.py."""

from __future__ import annotations

import asyncio
import os

from xpdctl.diff import diff_trees
from xpdctl.observe.drift import host_files, owned_globs
from xpdctl.observe.livetree import fetch_script, fetch_targets, parse_fetch
from xpdctl.observe.targets import HostTarget
from xpdctl.render import RenderedFile
from xpdctl.ssh.sections import new_marker
from xpdctl.ssh.transport import LocalShellTransport

RENDERED = {
    "hosts/h1/etc/systemd/system/xpd-t-decode-0.service": RenderedFile("[Service]\nExecStart=/bin/true\n", 0o644),
    "hosts/h1/etc/xpdctl/xpd-t-decode-0.env": RenderedFile("HF_TOKEN=secret\nPORT=1\n", 0o600),
    "hosts/h1/etc/xpdctl/kv-agent.yaml": RenderedFile("host: h1\n", 0o644),
}


def _target(root) -> HostTarget:
    expected = host_files(RENDERED, "h1")
    return HostTarget(
        name="h1",
        address="127.0.0.1",
        expected_files=expected,
        owned_globs=owned_globs("t"),
        root=str(root),
    )


def _put(root, path: str, content: str, mode: int) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    os.chmod(target, mode)


def test_live_tree_diffs_against_the_plan(tmp_path):
    root = tmp_path / "h1"
    _put(root, "/etc/systemd/system/xpd-t-decode-0.service", "[Service]\nExecStart=/bin/true\n", 0o644)
    _put(root, "/etc/xpdctl/xpd-t-decode-0.env", "HF_TOKEN=other\nPORT=1\n", 0o600)  # edited secret
    _put(root, "/etc/systemd/system/xpd-t-decode-9.service", "[Service]\n", 0o644)  # leftover
    tree = asyncio.run(fetch_targets([_target(root)], LocalShellTransport()))
    assert tree.unreachable == {}
    assert tree.files["hosts/h1/etc/xpdctl/xpd-t-decode-0.env"] == RenderedFile("HF_TOKEN=other\nPORT=1\n", 0o600)
    changes = {c.path: c for c in diff_trees(tree.files, RENDERED, {"HF_TOKEN"})}
    assert {path: c.status for path, c in changes.items()} == {
        "hosts/h1/etc/xpdctl/xpd-t-decode-0.env": "changed",
        "hosts/h1/etc/xpdctl/kv-agent.yaml": "added",
        "hosts/h1/etc/systemd/system/xpd-t-decode-9.service": "removed",
    }
    # Render's diff masks secret values: the live form shows that a secret changed, not the secret.
    assert "other" not in changes["hosts/h1/etc/xpdctl/xpd-t-decode-0.env"].diff


def test_contents_survive_byte_for_byte(tmp_path):
    root = tmp_path / "h1"
    odd = "no final newline\n\n  trailing spaces  \n\x1b[0m" + "ü"
    _put(root, "/etc/xpdctl/kv-agent.yaml", odd, 0o640)
    tree = asyncio.run(fetch_targets([_target(root)], LocalShellTransport()))
    assert tree.files["hosts/h1/etc/xpdctl/kv-agent.yaml"] == RenderedFile(odd, 0o640)


def test_cut_short_output_is_not_an_empty_host():
    marker = new_marker()
    assert parse_fetch(f"{marker} 644 /etc/a\naGk=\n", marker) is None
    assert parse_fetch(f"{marker} 644 /etc/a\naGk=\n{marker} end\n", marker) == {"/etc/a": RenderedFile("hi", 0o644)}
    assert "base64" in fetch_script(marker, ["/etc/a"], [])
