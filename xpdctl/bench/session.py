"""A bench session: the grid over one or more targets, then results.json, report.md and plots."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from xpdctl.bench import plots, tables, vllm_backend
from xpdctl.bench.prompts import load_tokenizer, random_prompts
from xpdctl.bench.results import Point, Results, Run, Settings, new_results, save
from xpdctl.bench.runner import PointSpec, run_point
from xpdctl.bench.target import Target
from xpdctl.errors import InputError

Progress = Callable[[int, str], None]


class BenchSession:
    def __init__(self, settings: Settings, backend: str, folder: Path):
        self.settings = settings
        self.folder = folder
        self.backend = self._resolve(backend)
        self._tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer and self.backend == "builtin" else None

    def _resolve(self, backend: str) -> str:
        if backend == "builtin":
            return backend
        has_tokenizer = bool(self.settings.tokenizer)
        if backend == "vllm":
            if not has_tokenizer:
                raise InputError("--backend vllm needs a local tokenizer: pass --tokenizer DIR (vLLM's random dataset tokenizes)")
            if not vllm_backend.available():
                raise InputError("--backend vllm: vLLM's benchmark module does not import in this Python; use --backend builtin")
            return backend
        return "vllm" if has_tokenizer and vllm_backend.available() else "builtin"

    def specs(self) -> list[PointSpec]:
        s = self.settings
        rate = float("inf") if s.request_rate is None else s.request_rate
        return [PointSpec(i, o, c, s.prompts_per_concurrency * c, rate, s.warmups, s.seed) for i, o, c in s.grid]

    def total_requests(self, targets: int = 1) -> int:
        return targets * sum(p.warmups + p.num_prompts for p in self.specs())

    def run(self, target: Target, on_progress: Progress = lambda n, what: None) -> Run:
        run = Run(label=target.label, url=target.url, model=target.model, inventory=target.inventory,
                  deployment=target.deployment, engine=target.engine, time_scale=target.time_scale)
        for spec in self.specs():
            what = f"{target.label} {spec.isl}/{spec.osl} c{spec.concurrency}"
            errors: dict[str, int] = {}
            if self.backend == "vllm":
                metrics = vllm_backend.run_point(target.url, target.model, self.settings.tokenizer, spec, self.folder / "vllm")
                on_progress(spec.warmups + spec.num_prompts, what)
            else:
                prompts = random_prompts(spec.num_prompts, spec.isl, self._tokenizer, spec.seed)
                metrics, outputs = asyncio.run(run_point(target.url, target.model, spec, prompts, lambda n, what=what: on_progress(n, what)))
                errors = dict(Counter(o.error for o in outputs if not o.success))
            run.points.append(Point(isl=spec.isl, osl=spec.osl, concurrency=spec.concurrency, num_prompts=spec.num_prompts,
                                    request_rate=self.settings.request_rate, backend=self.backend, metrics=metrics,
                                    errors=errors))
        return run

    def finish(self, runs: list[Run]) -> Results:
        results = new_results(self.settings, runs)
        if len(runs) >= 2:
            results.comparison = tables.compare(results, runs[0], runs[1])
        save(results, self.folder)
        (self.folder / "report.md").write_text(tables.markdown(results))
        plots.plot(results, self.folder)
        return results
