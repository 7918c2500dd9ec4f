"""`--resume` after the inventory or --image changed: the per-instance comparison of recorded and new renders,
and which changes a rollout in progress may take (renders of the shipped lab inventory, three decodes)."""

from __future__ import annotations

import dataclasses

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan
from xpdctl.releases import releases
from xpdctl.render import render_files
from xpdctl.upgrade import phases as ph
from xpdctl.upgrade.retarget import decide, differences
from xpdctl.upgrade.state import Instance, Rollout
from xpdctl.upgrade.target import alt_plan, with_image
from xpdctl.units.tree import find_service, manifest_of

from upgrade_helpers import REPO

IMAGE_2 = "rocm/vllm:v0.32.0-2@sha256:" + "2" * 64
IMAGE_3 = "rocm/vllm:v0.32.0-3@sha256:" + "3" * 64
DECODES = [f"xpd-lab-decode-{i}" for i in range(3)]
RESUME = "xpdctl upgrade -i lab.yaml --pool decode --resume"


def _loaded(image=None, decodes=3, **engine):
    loaded = load_inventory(REPO / "inventory" / "lab.yaml")
    inv = loaded.inventory
    decode = inv.pools.decode.model_copy(update={"instances_per_host": decodes, "tensor_parallel": 2})
    # lab.yaml's decode host names its own (ROCm build) version; a new release replaces both.
    hosts = [h.model_copy(update={"vllm_version": None}) for h in inv.hosts] if "vllm_version" in engine else inv.hosts
    inv = inv.model_copy(update={"pools": inv.pools.model_copy(update={"decode": decode}),
                                 "engine": inv.engine.model_copy(update=engine), "hosts": hosts})
    return with_image(dataclasses.replace(loaded, inventory=inv), "decode", image)


def _trees(loaded, alts=()):
    return {"target": render_files(build_plan(loaded, {})),
            "alt": render_files(alt_plan(loaded, {}, set(alts), 1000))}


def _rollout(trees, rolling=DECODES, surge=()):
    """An in-place rollout of ``rolling`` (batches of one), with surge instances when given."""
    def instance(source, name, kind):
        host, entry = find_service(manifest_of(trees[source]), name)
        return Instance(name=name, host=host, role=entry["role"], url=entry["url"], kind=kind, source=source,
                        generation=entry["generation"])

    olds = [instance("target", n, "instance") for n in rolling]
    surges = [instance("alt", n + "-next", "surge") for n in surge]
    return Rollout(cluster="lab", pool="decode", mode="in-place", by="me@here", started_at="t",
                   phases=ph.in_place(olds, surges, 1), instances={i.name: i for i in olds + surges},
                   pool_size=3, floor=2, old_generation=olds[0].generation, new_generation=olds[0].generation)


def test_differences_name_what_changed():
    base = _trees(_loaded())["target"]
    assert all(differences(base, base, n) == [] for n in DECODES + ["xpd-lab-prefill-0"])
    new_image = _trees(_loaded(IMAGE_3))["target"]
    old_image = _loaded().inventory.engine.images["amd"]
    assert differences(base, new_image, "xpd-lab-decode-1") == [f"the image: {old_image} -> {IMAGE_3}"]
    assert differences(base, new_image, "xpd-lab-prefill-0") == []  # --image applies to the pool's vendors
    restart = _trees(_loaded(restart_sec=30))["target"]
    [said] = differences(base, restart, "xpd-lab-decode-0")
    assert said.startswith("the unit ") and said.endswith("xpd-lab-decode-0.service")
    assert differences(base, _trees(_loaded(decodes=2))["target"], "xpd-lab-decode-2") == [
        "it is not in the new render"]
    loaded = _loaded()
    inv = loaded.inventory
    decode = inv.pools.decode.model_copy(update={"extra_args": ["--max-num-seqs", "64"]})
    args = dataclasses.replace(loaded, inventory=inv.model_copy(
        update={"pools": inv.pools.model_copy(update={"decode": decode})}))
    assert differences(base, _trees(args)["target"], "xpd-lab-decode-0") == ["the unit's ExecStart arguments"]


def test_differences_of_a_native_engine_name_the_program():
    local = load_inventory(REPO / "inventory" / "local.yaml")
    inv = local.inventory
    moved = dataclasses.replace(local, inventory=inv.model_copy(
        update={"engine": inv.engine.model_copy(update={"python": "/opt/release-3/bin/python"})}))
    old, new = render_files(build_plan(local, {})), render_files(build_plan(moved, {}))
    name = next(s["name"] for h in manifest_of(old)["hosts"].values() for s in h["services"] if s["role"] == "decode")
    assert differences(old, new, name) == [
        f"the unit's ExecStart program: {inv.engine.python} -> /opt/release-3/bin/python"]


def test_nothing_changed_resumes_as_recorded():
    previous, recorded = _trees(_loaded())["target"], _trees(_loaded(IMAGE_2))
    rollout = _rollout(recorded)
    rollout.phase = 1  # decode-0 is done: no matter, nothing of it changes
    assert decide(rollout, previous, recorded, _trees(_loaded(IMAGE_2)), resume=RESUME) == ([], None)


def test_instances_not_upgraded_yet_take_the_new_files():
    previous, recorded = _trees(_loaded())["target"], _trees(_loaded(IMAGE_2))
    rollout = _rollout(recorded)
    rollout.status = "failed"  # batch 1 failed and was rolled back: back at its first step
    names, v = decide(rollout, previous, recorded, _trees(_loaded(IMAGE_3)), resume=RESUME)
    assert names == DECODES and v.compatible


def test_new_files_for_an_upgraded_instance_are_refused_naming_the_difference():
    previous, recorded = _trees(_loaded())["target"], _trees(_loaded(IMAGE_2))
    rollout = _rollout(recorded)
    rollout.phase = 1
    with pytest.raises(InputError) as refused:
        decide(rollout, previous, recorded, _trees(_loaded(IMAGE_3)), resume=RESUME, changed="--image")
    message = refused.value.message
    assert f"xpd-lab-decode-0 (the image: {IMAGE_2} -> {IMAGE_3})" in message
    assert "xpd-lab-decode-1" not in message and "two releases" in message
    assert "Put --image back to what the rollout started with" in message and RESUME in message


def test_an_interrupted_batch_past_install_counts_as_upgraded():
    previous, recorded = _trees(_loaded())["target"], _trees(_loaded(IMAGE_2))
    rollout = _rollout(recorded)
    rollout.step = ph.BATCH_STEPS.index("start")  # killed after install: decode-0 may have the recorded files
    with pytest.raises(InputError, match="already upgraded: xpd-lab-decode-0 "):
        decide(rollout, previous, recorded, _trees(_loaded(IMAGE_3)), resume=RESUME)
    rollout.step = ph.BATCH_STEPS.index("install")  # install runs again, from the new tree
    assert decide(rollout, previous, recorded, _trees(_loaded(IMAGE_3)), resume=RESUME)[0] == DECODES


def test_a_surge_instance_keeps_its_files():
    """It leaves when the rollout ends and serves the same generation meanwhile."""
    previous = _trees(_loaded())["target"]
    recorded = _trees(_loaded(IMAGE_2), ["xpd-lab-decode-0"])
    rollout = _rollout(recorded, surge=["xpd-lab-decode-0"])
    rollout.phase = 1  # surge up done
    new = _trees(_loaded(IMAGE_3), ["xpd-lab-decode-0"])
    assert differences(recorded["alt"], new["alt"], "xpd-lab-decode-0-next")
    assert decide(rollout, previous, recorded, new, resume=RESUME)[0] == DECODES


def test_changes_a_rollout_cannot_take():
    previous, recorded = _trees(_loaded())["target"], _trees(_loaded(IMAGE_2))
    with pytest.raises(InputError, match=r"adds or removes decode instances \(xpd-lab-decode-2\)"):
        decide(_rollout(recorded), previous, recorded, _trees(_loaded(IMAGE_2, decodes=2)), resume=RESUME)
    other = next(r for r in releases() if r != _loaded().inventory.engine.vllm_version)  # one the table knows
    with pytest.raises(InputError, match=f"vllm_version: .* -> {other}.*in place, so --resume refuses it.*--blue-green"):
        decide(_rollout(recorded), previous, recorded, _trees(_loaded(IMAGE_2, vllm_version=other)),
               resume=RESUME)
    # A rollout of decode-0 alone (the others' files had not changed): the new image would change them too.
    only_first = _rollout(recorded, rolling=DECODES[:1])
    with pytest.raises(InputError, match=r"also changes xpd-lab-decode-1 \(.*\); xpd-lab-decode-2 .*does not roll"):
        decide(only_first, previous, recorded, _trees(_loaded(IMAGE_3)), resume=RESUME)
