"""PNG plots: median E2EL and TPS against concurrency, one panel per ISL/OSL scenario, one line per run."""

from __future__ import annotations

from pathlib import Path

from xpdctl.bench.results import Results
from xpdctl.bench.tables import scenario_name

_SERIES = {"e2el": ("Median E2EL (s)", lambda p: p.e2el_s), "tps": ("Total tokens/s", lambda p: p.tps)}


def plot(results: Results, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    cells = results.settings.scenarios()
    cols = min(2, len(cells))
    rows = (len(cells) + cols - 1) // cols
    written = []
    for name, (ylabel, value) in _SERIES.items():
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
        for ax, (isl, osl) in zip(axes.flat, cells):
            for run in results.runs:
                pts = [p for c in results.settings.concurrencies(isl, osl)
                       if (p := run.point(isl, osl, c)) and p.metrics.get("completed")]
                if pts:
                    ax.plot([p.concurrency for p in pts], [value(p) for p in pts], marker="o",
                            label=run.label if run.engine == "endpoint" else f"{run.label} ({run.engine_label()})")
            ax.set_title(scenario_name(isl, osl))
            ax.set_xscale("log", base=2)
            ticks = results.settings.concurrencies(isl, osl)
            ax.set_xticks(ticks, [str(c) for c in ticks])
            ax.minorticks_off()
            ax.set_xlabel("Concurrency")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend()
        for ax in list(axes.flat)[len(cells):]:
            ax.set_visible(False)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
