"""The phases of a rollout: which instances move together, through which steps.

In place (the new release pairs with the other pool):
  surge up (only when the floor would otherwise reach zero) -> batch 1..n -> surge down
Blue-green (it does not: a new generation):
  green up -> shift (drain the old) -> retire old (out of the router) -> base up -> green down -> record
``base up`` brings the new generation back to the inventory's own names and ports, so that what runs
afterwards is exactly what ``render`` gives; green instances only carry traffic meanwhile.
"""

from __future__ import annotations

from xpdctl.upgrade.state import Instance, Phase

# The image is pulled before the instance is drained: a pull takes minutes, capacity is kept meanwhile.
# No `stop` before `install`: `start` applies the new files, which restarts the instance (systemd stops
# it, then starts it); a separate stop was one more apply on the host, with its files removed only to
# be written back.
BATCH_STEPS = ["check-floor", "pull", "drain", "wait-idle", "install", "start", "health", "warm-up",
               "pairs-ok", "undrain"]
UP_STEPS = ["pull", "install", "start", "health", "warm-up", "pairs-ok", "add"]
# Surge and green instances leave only once the instances that replace them serve.
DOWN_STEPS = ["check-floor", "drain", "wait-idle", "remove", "stop"]


def sizes(pool_size: int, max_unavailable: int) -> tuple[int, int, int]:
    """(floor, batch, surge): at least one instance always serves, so a pool of one needs a surge."""
    floor = max(pool_size - max_unavailable, 1)
    batch = max(min(max_unavailable, pool_size), 1)
    surge = max(0, floor + batch - pool_size)
    return floor, batch, surge


def in_place(rolling: list[Instance], surges: list[Instance], batch: int, *, stop_first: bool = False) -> list[Phase]:
    """``stop_first``: a restart (`--restart`), whose instances may keep the files they run; `start` would
    then have nothing to apply, so they are stopped before."""
    steps = BATCH_STEPS
    if stop_first:
        steps = [*BATCH_STEPS[:BATCH_STEPS.index("install")], "stop", *BATCH_STEPS[BATCH_STEPS.index("install"):]]
    phases = []
    if surges:
        phases.append(Phase(name="surge up", instances=[s.name for s in surges], steps=UP_STEPS, rollback=True))
    for k in range(0, len(rolling), batch):
        members = [i.name for i in rolling[k:k + batch]]
        phases.append(Phase(name=f"batch {k // batch + 1}", instances=members, steps=steps, rollback=True))
    if surges:
        phases.append(Phase(name="surge down", instances=[s.name for s in surges], steps=DOWN_STEPS))
    return phases


def blue_green(old: list[Instance], greens: list[Instance]) -> list[Phase]:
    olds = [i.name for i in old]
    green = [g.name for g in greens]
    return [
        Phase(name="green up", instances=green, steps=UP_STEPS, rollback=True),
        Phase(name="shift", instances=olds, steps=["drain", "wait-idle"], rollback=True),
        # Out of the router only: base up's start restarts them on the new files.
        Phase(name="retire old", instances=olds, steps=["remove"]),
        Phase(name="base up", instances=olds, steps=UP_STEPS),
        Phase(name="green down", instances=green, steps=DOWN_STEPS),
        Phase(name="record", instances=[], steps=["record"]),
    ]
