"""What ``upgrade --resume`` does when the inventory (or ``--image``) changed since the rollout started.

The operator's fix for a failed rollout is often a new release: another interpreter, another image.
``--resume`` renders the inventory again and compares, instance by instance, the files the rollout
recorded (its target and alt trees) with the new ones. Instances not upgraded yet may take the new
files. It refuses what would end badly: instances added or removed, a new release that cannot pair
in place, a change to an instance the rollout does not roll, and new files for an instance that
already runs the recorded ones (the pool would end on two releases).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from xpdctl.errors import InputError
from xpdctl.provision.hosts import container_image
from xpdctl.upgrade.state import Rollout
from xpdctl.upgrade.target import OTHER, Verdict, verdict
from xpdctl.units.tree import Files, engines, find_service, manifest_of

SHORT = 60  # values longer than this are named, not shown


def _value(key: str, old, new) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for sub in sorted(set(old) | set(new)) if old.get(sub) != new.get(sub)
                for line in _value(f"{key}.{sub}", old.get(sub), new.get(sub))]
    shown = json.dumps(old), json.dumps(new)
    return [f"{key}: {shown[0]} -> {shown[1]}" if max(map(len, shown)) <= SHORT else key]


def _command(old: list[str], new: list[str]) -> list[str]:
    """What differs between two unequal command lines."""
    said = []
    if old[0] != new[0]:
        said.append(f"the unit's ExecStart program: {old[0]} -> {new[0]}")
    image_old, image_new = container_image(old), container_image(new)
    if image_old != image_new:
        said.append(f"the image: {image_old} -> {image_new}")
    if not said or [a for a in old[1:] if a != image_old] != [a for a in new[1:] if a != image_new]:
        said.append("the unit's ExecStart arguments")
    return said


def differences(old: Files, new: Files, name: str) -> list[str]:
    """What differs in engine ``name``'s files (manifest entry, unit, env file) between two renders,
    in words an operator can check against the inventory; [] when nothing does."""
    found_old, found_new = find_service(manifest_of(old), name), find_service(manifest_of(new), name)
    if found_old is None or found_new is None:
        return [f"it is not in the {'new' if found_new is None else 'recorded'} render"]
    a, b = found_old[1], found_new[1]
    said = _command(a["command"], b["command"]) if a["command"] != b["command"] else []
    changed_env = sorted(k for k in set(a["env"]) | set(b["env"]) if a["env"].get(k) != b["env"].get(k))
    if changed_env:
        said.append("the environment: " + ", ".join(changed_env))
    # vllm_args and the image are part of the command, already described with it.
    skip = {"command", "env"} | ({"vllm_args", "image"} if a["command"] != b["command"] else set())
    said += [line for key in sorted(set(a) | set(b)) if key not in skip and a.get(key) != b.get(key)
             for line in _value(key, a.get(key), b.get(key))]
    for what, key in (("unit", "unit"), ("env file", "env_file")):
        # Secrets reach only the env file; a template change only the unit.
        if not said and old.get(a[key]) != new.get(b[key]):
            said.append(f"the {what} {b[key]}")
    return said


def _installed(rollout: Rollout) -> set[str]:
    """Instances whose recorded files may already be in the deployed render: every instance of a phase
    that went through ``install``, and of the current phase once past it (not rolled back)."""
    names = {n for p in rollout.phases[:rollout.phase] if "install" in p.steps for n in p.instances}
    at = rollout.current()
    if at is not None and "install" in at[0].steps and at[0].steps.index("install") < rollout.step:
        names |= set(at[0].instances)
    return names


def _names(manifest: dict, role: str) -> set[str]:
    return {s["name"] for _, s in engines(manifest, role)}


def decide(rollout: Rollout, previous: Files, recorded: Mapping[str, Files], new: Mapping[str, Files], *,
           resume: str, changed: str = "the inventory") -> tuple[list[str], Verdict | None]:
    """(instances that take the new files, verdict of the new target); ([], None) when no instance's files changed.

    ``previous`` is the deployed render the rollout began with; ``recorded``/``new`` map a source
    ("target", "alt") to its tree. ``resume`` is the command that resumes this rollout and ``changed``
    what the operator changed, both for messages. Raises InputError when the change cannot be taken.
    """
    pool = rollout.pool
    put_back = (f"Put {changed} back to what the rollout started with (and fix that release where it failed), "
                f"run `{resume}`, then run a new upgrade")
    target_old, target_new = manifest_of(recorded["target"]), manifest_of(new["target"])
    for role in ("prefill", "decode"):
        was, now = _names(target_old, role), _names(target_new, role)
        if was != now:
            moved = ", ".join(sorted(was ^ now))
            raise InputError(f"{changed} now adds or removes {role} instances ({moved}) compared with the rollout "
                             f"in progress, which keeps the instances it started with. {put_back} (a pool's size "
                             "changes with `xpdctl up`, not with an upgrade)")
    diffs = {n: differences(recorded[i.source], new[i.source], n) for n, i in rollout.instances.items()}
    # Instances of the pool the rollout leaves alone: their files had not changed when it started.
    outside = {n: differences(recorded["target"], new["target"], n)
               for n in sorted(_names(target_old, pool) - set(rollout.instances))}
    if not any(diffs.values()) and not any(outside.values()):
        return [], None
    v = verdict(manifest_of(previous), target_new, pool)
    if rollout.mode == "in-place" and not v.compatible:
        raise InputError(f"{v.reason()}; the rollout in progress is in place, so --resume refuses it. Put {changed} "
                         f"back to a release that pairs with the deployed {OTHER[pool]} pool, run `{resume}`, "
                         "then upgrade with --blue-green")
    if any(outside.values()):
        said = "; ".join(f"{n} ({', '.join(d)})" for n, d in outside.items() if d)
        raise InputError(f"{changed} now also changes {said}, which the rollout in progress does not roll: "
                         f"resuming would leave the {pool} pool on two releases. {put_back}")
    # A surge instance leaves at the end of the rollout and, in place, serves the same generation:
    # it keeps the files it runs with.
    installed = _installed(rollout)
    kept = {n for n in installed if rollout.instances[n].kind != "surge"}
    clash = {n: d for n, d in diffs.items() if d and n in kept}
    if clash:
        said = "; ".join(f"{n} ({', '.join(d)})" for n, d in sorted(clash.items()))
        raise InputError(f"{changed} now gives other files to instances the rollout already upgraded: {said}. "
                         f"Resuming would leave the {pool} pool on two releases. {put_back}")
    return [n for n, d in diffs.items() if d and n not in installed], v
