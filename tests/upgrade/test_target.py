"""Generation safety: which new releases may roll in place, and why not; surge/green instance naming."""

from __future__ import annotations

import dataclasses

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.plan import CONTAINER_RUN, DOCKER, build_plan
from xpdctl.releases import releases
from xpdctl.render import render_files
from xpdctl.upgrade.target import alt_plan, verdict, with_image
from xpdctl.units.tree import manifest_of

from upgrade_helpers import REPO

NEW_ROCM = "rocm/vllm:v0.32.0-new@sha256:" + "b" * 64


def _loaded(**engine):
    loaded = load_inventory(REPO / "inventory" / "lab.yaml")
    inv = loaded.inventory
    # lab.yaml's decode host names its own (ROCm build) version; a new release replaces both.
    hosts = [h.model_copy(update={"vllm_version": None}) for h in inv.hosts] if "vllm_version" in engine else inv.hosts
    return dataclasses.replace(loaded, inventory=inv.model_copy(
        update={"engine": inv.engine.model_copy(update=engine), "hosts": hosts}))


def _manifest(loaded):
    return manifest_of(render_files(build_plan(loaded, {})))


def test_new_image_of_the_same_release_rolls_in_place():
    deployed = _manifest(_loaded())
    new = with_image(_loaded(), "decode", NEW_ROCM)
    assert new.inventory.engine.images["amd"] == NEW_ROCM
    assert new.inventory.engine.images["nvidia"] == _loaded().inventory.engine.images["nvidia"]
    v = verdict(deployed, _manifest(new), "decode")
    assert v.compatible and v.changes == []


def test_release_changing_a_factor_is_refused_with_the_factor():
    deployed = _manifest(_loaded())
    old = _loaded().inventory.engine.vllm_version
    new = next(r for r in releases() if r != old)  # another release the table knows (a plan needs its NIXL module)
    v = verdict(deployed, _manifest(_loaded(vllm_version=new)), "decode")
    assert not v.compatible
    assert v.changes == [f"vllm_version: {old} -> {new}"]
    assert f"{old} -> {new}" in v.reason() and v.old_generation in v.reason()


def test_image_flag_checks():
    with pytest.raises(InputError, match="pinned by digest"):
        with_image(_loaded(), "decode", "rocm/vllm:latest")
    local = load_inventory(REPO / "inventory" / "local.yaml")
    with pytest.raises(InputError, match="engine.python"):
        with_image(local, "decode", NEW_ROCM)


def test_alt_instances_get_other_names_and_ports():
    loaded = _loaded()
    base = {s.name: s for s in build_plan(loaded, {}).engines}
    name = next(n for n, s in base.items() if s.role == "decode")
    alt = alt_plan(loaded, {}, {name}, 1000)
    [s] = alt.engines
    assert s.name == name + "-next" and s.port == base[name].port + 1000
    assert s.details["side_channel_port"] == base[name].details["side_channel_port"] + 1000
    assert s.details["generation"] == base[name].details["generation"]
    assert f"--port={s.port}" in " ".join(s.command).replace("--port ", "--port=")


def test_an_alt_container_runs_under_its_own_name():
    """lab.yaml's engines run as containers: the surge instance's container, env file, ExecStop and
    ExecStartPre carry its name. Under the old one's name, its ExecStartPre (`docker rm --force NAME`)
    removed the serving old container, and the old unit's ExecStop stopped the surge's (issue 14)."""
    loaded = _loaded()
    name = next(s.name for s in build_plan(loaded, {}).engines if s.role == "decode")
    [s] = alt_plan(loaded, {}, {name}, 1000).engines
    assert s.name == name + "-next"
    assert s.command[:2] == (CONTAINER_RUN, s.name) and f"--name={s.name}" in s.command
    assert f"--env-file={s.env_file}" in s.command
    assert s.stop_command == (DOCKER, "stop", s.name) and s.pre_commands == ((DOCKER, "rm", "--force", s.name),)
    words = [*s.command, *s.stop_command, *(w for c in s.pre_commands for w in c), *s.env.values()]
    assert [w for w in words if name in w and s.name not in w] == []


def test_a_new_image_changes_the_kv_agents_unit_on_the_pools_hosts():
    """With vLLM engines in containers the KV agent runs in the host's engine image (xpdctl/plan.py), so
    the target of `upgrade --image` changes the agent's unit on the pool's hosts, and only there. The
    rollout replaces engine instances only (docs/upgrade.md says what that leaves to the next `up`)."""
    old, new = build_plan(_loaded(), {}), build_plan(with_image(_loaded(), "decode", NEW_ROCM), {})

    def agent_images(plan):
        return {s.host: s.details["image"] for s in plan.services() if s.role == "kv-agent"}

    assert agent_images(old) == {"h100-01": _loaded().inventory.engine.images["nvidia"],
                                 "mi300x-01": _loaded().inventory.engine.images["amd"]}  # fmt: skip
    assert agent_images(new) == {**agent_images(old), "mi300x-01": NEW_ROCM}
