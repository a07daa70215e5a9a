"""The paper's Fig. 3 (§6.1, Tab. K) as a section of the significance report: moment retrieval against the number
of refinement steps K, one line per family of models, e.g. K steps on the last K cached layers (the paper's red
line) and K steps all on the last layer's features (blue).

A report names its lines in config.yaml (``significance.reports.<folder>.k_sweep``: label -> models, in any
order). Each model's K is the number of levels its checkpoints refine (``len(levels)`` of its levels.json from
sdst.levels, the same for every seed); its values are the mean ± std over seeds (ddof = 1) of the aggregated
metrics.json. Two metrics per dataset kind: R1@0.7 and the mAP (QVHighlights-style) or the mIoU (Charades-STA,
TACoS). The figure (``k_sweep.png`` beside the report) has one panel per metric and dataset, error bars of one
std; the table gives the numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sdst.reporting.over_seeds import by_model

METRICS = {"qvh": ("MR-full-R1@0.7", "MR-full-mAP"), "mr": ("MR-R1@0.7", "MR-mIoU")}
COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple")


class SweepError(ValueError):
    """A K-sweep model the report cannot place (no levels.json, or no metrics.json)."""


def points(metrics_paths: list[str], levels_paths: list[str], sweep: dict[str, list[str]]) -> dict:
    """{dataset: {"metrics": (m1, m2), "lines": {label: [{"model", "K", m1: stat, m2: stat}, ...] sorted by K}}}."""
    ks = {}
    for _, results in by_model(levels_paths):
        counts = {len(r["levels"]) for r in results}
        if len(counts) != 1:
            raise SweepError(f"{results[0]['model']} on {results[0]['dataset']}: its seeds refine {sorted(counts)} "
                             "levels")
        ks[results[0]["dataset"], results[0]["model"]] = counts.pop()
    metrics = {}
    for path in metrics_paths:
        m = json.loads(Path(path).read_text())
        metrics[m["dataset"], m["model"]] = m["splits"][m["headline_split"]]
    out = {}
    for dataset in dict.fromkeys(d for d, _ in metrics):
        first = next(v for (d, _), v in metrics.items() if d == dataset)
        names = METRICS["qvh" if METRICS["qvh"][0] in first else "mr"]  # QVHighlights-style or R1/mIoU only
        lines = {}
        for label, models in sweep.items():
            line = []
            for model in models:
                if (dataset, model) not in metrics:
                    raise SweepError(f"k_sweep line {label!r}: {model} is not among the report's models on {dataset}")
                if (dataset, model) not in ks:
                    raise SweepError(f"k_sweep line {label!r}: {model} has no refinement levels on {dataset} "
                                     "(no levels.json: the K sweep is for arch sdst)")
                stats = metrics[dataset, model]
                line.append({"model": model, "K": ks[dataset, model],
                             **{n: {k: (stats.get(n) or {}).get(k) for k in ("mean", "std")} for n in names}})
            lines[label] = sorted(line, key=lambda p: p["K"])
        out[dataset] = {"metrics": names, "lines": lines}
    return out


def plot(data: dict, path: str | Path) -> Path:
    """One panel per (dataset, metric): each line's mean against K, error bars of one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, n) for d, entry in data.items() for n in entry["metrics"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (dataset, name) in zip(axes[0], panels):
        for i, (label, line) in enumerate(data[dataset]["lines"].items()):
            line = [p for p in line if p[name]["mean"] is not None]
            ax.errorbar([p["K"] for p in line], [p[name]["mean"] for p in line],
                        yerr=[p[name]["std"] or 0.0 for p in line], color=COLOURS[i % len(COLOURS)], marker="o",
                        capsize=3, label=label)
        ks = sorted({p["K"] for line in data[dataset]["lines"].values() for p in line})
        ax.set_xticks(ks)
        ax.set_xlabel("refinement steps K")
        ax.set_title(f"{dataset}: {name}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def render(data: dict, figure: str | Path, report_dir: str | Path) -> str:
    """The section of the report: a table per dataset (mean ± std over seeds at each K) and the figure."""
    lines = ["## Refinement steps K (paper Fig. 3)", "",
             "Moment retrieval against the number of refinement steps K of each line's models (`k_sweep` of the "
             "report in config.yaml; K read from each model's checkpoints), mean ± std over seeds.", ""]
    for dataset, entry in data.items():
        names = entry["metrics"]
        lines += [f"### {dataset}", "", "| line | K | model | " + " | ".join(names) + " |",
                  "|---|---:|---|" + "---:|" * len(names)]
        for label, line in entry["lines"].items():
            for p in line:
                cells = ["–" if p[n]["mean"] is None else f"{p[n]['mean']:.2f}"
                         + ("" if p[n]["std"] is None else f" ± {p[n]['std']:.2f}") for n in names]
                lines.append(f"| {label} | {p['K']} | {p['model']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"![refinement steps K]({os.path.relpath(figure, report_dir)})", ""]
    return "\n".join(lines)


def section(metrics_paths: list[str], levels_paths: list[str], sweep: dict[str, list[str]],
            report_dir: str | Path) -> str:
    """Points, figure (``k_sweep.png`` in ``report_dir``) and Markdown; "" without a sweep."""
    if not sweep:
        return ""
    data = points(metrics_paths, levels_paths, sweep)
    figure = plot(data, Path(report_dir) / "k_sweep.png")
    return render(data, figure, report_dir)
