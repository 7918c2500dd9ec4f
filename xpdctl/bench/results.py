"""The results file (``results.json``) of a bench run, and where it is written.

One file holds the settings, one run per cluster measured (the ``-i`` inventory, and the one given
with ``--compare``), each with its grid points and ``vllm bench serve``-style metrics, plus the
comparison the markdown tables show. ``xpdctl advise --measured`` reads the ``deployment`` of each
run to match measurements to options.
"""

from __future__ import annotations

from typing import Literal

import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from xpdctl.errors import InputError

VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(_Model):
    isl: int
    osl: int
    concurrency: int
    num_prompts: int
    request_rate: float | None  # None = all at once
    backend: str  # builtin | vllm
    metrics: dict[str, float]
    # Why requests failed: each distinct message with its count (the builtin client only), so a
    # failed point says what went wrong without a rerun.
    errors: dict[str, int] = {}

    @property
    def e2el_s(self) -> float:
        return self.metrics["median_e2el_ms"] / 1000

    @property
    def tps(self) -> float:
        return self.metrics["total_token_throughput"]


class Run(_Model):
    label: str
    url: str
    model: str
    inventory: str | None = None
    deployment: dict | None = None  # perfmodel Option.signature() of the inventory's pools
    # What produced the numbers: "endpoint" (whatever serves the URL, measured) or "simulator" (xpdctl
    # sim engines timed by the performance model, at time_scale: never a measurement). None: written
    # before bench recorded it.
    engine: Literal["endpoint", "simulator"] | None = None
    time_scale: float | None = None
    points: list[Point] = []

    def engine_label(self) -> str:
        if self.engine == "simulator":
            return f"simulated by xpdctl sim (performance model, time scale {self.time_scale or 1:g})"
        if self.engine == "endpoint":
            return "measured at the endpoint"
        return "engine not recorded"

    def point(self, isl: int, osl: int, concurrency: int) -> Point | None:
        return next((p for p in self.points if (p.isl, p.osl, p.concurrency) == (isl, osl, concurrency)), None)


class Settings(_Model):
    grid: list[tuple[int, int, int]]  # (isl, osl, concurrency), in the order they run
    prompts_per_concurrency: int
    request_rate: float | None
    warmups: int
    seed: int
    tokenizer: str | None = None

    def scenarios(self) -> list[tuple[int, int]]:
        return list(dict.fromkeys((isl, osl) for isl, osl, _ in self.grid))

    def concurrencies(self, isl: int, osl: int) -> list[int]:
        return [c for i, o, c in self.grid if (i, o) == (isl, osl)]


def product_grid(isl: list[int], osl: list[int], concurrency: list[int]) -> list[tuple[int, int, int]]:
    return [(i, o, c) for i in isl for o in osl for c in concurrency]


# The report's runs: every ISL/OSL in {1K, 8K} x {1K, 8K} at concurrency 1-32, and 8K/1K on to 256.
REPORT_GRID = product_grid([1024, 8192], [1024, 8192], [1, 4, 8, 16, 32]) + [(8192, 1024, c) for c in (64, 128, 256)]


class Results(_Model):
    version: int = VERSION
    created: str
    settings: Settings
    runs: list[Run]
    comparison: dict | None = None


def new_results(settings: Settings, runs: list[Run]) -> Results:
    return Results(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), settings=settings, runs=runs)


def result_folder(base: Path, label: str) -> Path:
    """``base/YYYYmmdd-HHMMSS-label``, unique even when two runs start within a second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label) or "run"
    folder = base / f"{stamp}-{safe}"
    n = 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{safe}-{n}"
    folder.mkdir(parents=True)
    return folder


def save(results: Results, folder: Path) -> Path:
    path = folder / "results.json"
    path.write_text(json.dumps(results.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    return path


def load(path: Path) -> Results:
    file = path / "results.json" if path.is_dir() else path
    try:
        return Results.model_validate(json.loads(file.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise InputError(f"{file}: not a results file of `xpdctl bench` ({exc}); pass the folder a bench run wrote") from exc
