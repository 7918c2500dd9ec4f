"""Moving one service's files and manifest entry between rendered trees (the shipped lab inventory)."""

from __future__ import annotations

from pathlib import Path

from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan
from xpdctl.render import read_tree, render_files, write_tree
from xpdctl.units.tree import copy_service, find_service, manifest_of, without_service, write_deployed

REPO = Path(__file__).resolve().parents[2]


def _render(**engine):
    loaded = load_inventory(REPO / "inventory" / "lab.yaml")
    inv = loaded.inventory
    loaded.inventory = inv.model_copy(update={"engine": inv.engine.model_copy(update=engine)})
    return render_files(build_plan(loaded, {}))


def test_copy_service_takes_only_that_service():
    old = _render()
    new = _render(restart_sec=30)
    name = next(s["name"] for s in manifest_of(old)["hosts"]["mi300x-01"]["services"] if s["role"] == "decode")
    mixed = copy_service(old, new, name)
    _, entry = find_service(manifest_of(mixed), name)
    changed = {rel for rel in mixed if mixed[rel] != old[rel]}
    assert changed - {"manifest.json"} == {entry["unit"]}  # restart_sec is in the unit; the env file is equal
    assert "RestartSec=30" in mixed[entry["unit"]].content
    # The manifest keeps render's order of services.
    assert [s["name"] for s in manifest_of(mixed)["hosts"]["mi300x-01"]["services"]] == [
        s["name"] for s in manifest_of(old)["hosts"]["mi300x-01"]["services"]]
    assert mixed[entry["env_file"]].mode == 0o600


def test_without_then_copy_restores_the_tree():
    old = _render()
    name = next(s["name"] for s in manifest_of(old)["hosts"]["h100-01"]["services"] if s["role"] == "prefill")
    _, entry = find_service(manifest_of(old), name)
    gone = without_service(old, name)
    assert find_service(manifest_of(gone), name) is None
    assert entry["unit"] not in gone and entry["env_file"] not in gone
    back = copy_service(gone, old, name)
    assert set(back) == set(old)
    assert {rel for rel in back if rel != "manifest.json" and back[rel] != old[rel]} == set()


def test_write_deployed_touches_only_what_changed(tmp_path):
    old = _render()
    write_tree(old, tmp_path)
    name = next(s["name"] for s in manifest_of(old)["hosts"]["mi300x-01"]["services"] if s["role"] == "decode")
    _, entry = find_service(manifest_of(old), name)
    untouched = {rel: (tmp_path / rel).stat().st_ino for rel in old if rel != entry["unit"]}
    new = without_service(copy_service(old, _render(restart_sec=30), name), name)
    write_deployed(new, tmp_path)
    assert read_tree(tmp_path) == new
    # Files that did not change are the same files (no rewrite that a kill could leave half done).
    assert {rel: (tmp_path / rel).stat().st_ino for rel in new if rel != "manifest.json"} == {
        rel: ino for rel, ino in untouched.items() if rel in new and rel != "manifest.json"}
    assert not list(tmp_path.glob(".upgrade-*"))


def test_a_service_whose_name_recurs_on_several_hosts_is_copied_for_the_host_named():
    """A router's (or KV agent's) name is the same on each of its hosts: copying one host's must not
    take another host's entry (deploy/handoff.py copies a stand-in router per router host)."""
    base = _render()
    manifest = manifest_of(base)
    agents = [h for h, e in manifest["hosts"].items() if any(s["name"] == "xpd-lab-kv-agent" for s in e["services"])]
    assert len(agents) >= 2
    last = agents[-1]
    stripped = without_service(base, "xpd-lab-kv-agent")  # takes the first host's only
    assert find_service(manifest_of(stripped), "xpd-lab-kv-agent", agents[0]) is None
    restored = copy_service(stripped, base, "xpd-lab-kv-agent", agents[0])
    assert find_service(manifest_of(restored), "xpd-lab-kv-agent", agents[0]) is not None
    assert find_service(manifest_of(restored), "xpd-lab-kv-agent", last) == find_service(manifest, "xpd-lab-kv-agent", last)
