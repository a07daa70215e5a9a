"""Significance report across models (§M, done right): tables per dataset, then Friedman/Nemenyi.

    python -m sdst.reporting.significance --metrics results/D/M/metrics.json ... --out results/significance/report.md
                          [--metric-set qvh=MR-full-R1@0.5,... --metric-set mr=...] [--block-by-seed]
                          [--lower-is-better m1,m2] [--alpha 0.05] [--gt DATASET=FILE ...]
                          [--offsets results/D/M/seed<k>/diagnose/offsets.json ...]
                          [--levels results/D/M/seed<k>/diagnose/levels.json ...]
                          [--k-sweep "LABEL=M1,M2,..." ...]

Reads each model's aggregated metrics (sdst.reporting.aggregate), writes beside ``report.md``: ``scores.csv``
(model,dataset,metric,seed,value — the input of ``python -m sdst.reporting.stats``), ``report.json`` (the statistics)
and ``cd_diagram.png``. The models are the treatments, ranked within each block (dataset x metric, or
dataset x metric x seed); blocks with a missing value are dropped and counted. Then whether every run reached
its plateau (sdst.reporting.budget), the breakdown by moment
length (sdst.reporting.lengths), what the ranking of each model's windows loses and where its first window lands
(sdst.reporting.ranking), the paper's Fig. 3 where the report names its K-sweep lines (sdst.reporting.k_sweep,
``k_sweep.png``) and, for SDST-family models, where their deformable offsets point
(sdst.diagnose) and what each refinement level predicts (sdst.levels).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from sdst.reporting.html import write_html

# The paper's reported columns (Tab. 1 for QVHighlights, Tab. 2 for Charades-STA / TACoS).
DEFAULT_METRICS = {
    "qvh": ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-full-mAP",
            "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"],
    "mr": ["MR-R1@0.3", "MR-R1@0.5", "MR-R1@0.7", "MR-mIoU"],
}


def metric_kind(metrics: dict) -> str:
    return "qvh" if any(k.startswith("MR-full") for k in metrics) else "mr"


def collect(paths: list[str], metric_sets: dict[str, list[str]]) -> tuple[list[dict], dict]:
    """Score rows for the statistics, and per-dataset tables {dataset: {model: {...}}}."""
    rows, tables = [], {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        split = m["headline_split"]
        metrics = m["splits"][split]
        names = metric_sets[metric_kind(metrics)]
        entry = {"split": split, "parameters": m.get("training", {}).get("parameters"),
                 "seeds": m["seeds"], "metrics": {}}
        for name in names:
            values = metrics.get(name, {}).get("values") or [None] * len(m["seeds"])
            for seed, value in zip(m["seeds"], values):
                rows.append({"model": m["model"], "dataset": m["dataset"], "metric": name, "seed": seed,
                             "value": "" if value is None else value})
            entry["metrics"][name] = metrics.get(name)
        tables.setdefault(m["dataset"], {})[m["model"]] = entry
    return rows, tables


def _fmt(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _p(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def render(tables: dict, result: dict | None, metric_sets: dict, error: str | None = None) -> str:
    lines = ["# Significance report", ""]
    lines.append("Models are the treatments, ranked within each block; see `report.json` for every number and "
                 "`scores.csv` for the inputs (`python -m sdst.reporting.stats --scores scores.csv` reproduces them).")
    lines.append("")
    for dataset, models in tables.items():
        first = next(iter(models.values()))
        names = [n for n in metric_sets["qvh" if any(k.startswith("MR-full") for k in first["metrics"])
                                        else "mr"] if n in first["metrics"]]
        lines += [f"## {dataset} ({first['split']} split, mean ± std over seeds)", ""]
        lines.append("| model | parameters | seeds | " + " | ".join(names) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(names))
        for model, entry in models.items():
            params = entry["parameters"]
            ptxt = f"{params / 1e6:.2f} M" if params else "–"
            lines.append(f"| {model} | {ptxt} | {len(entry['seeds'])} | "
                         + " | ".join(_fmt(entry["metrics"].get(n)) for n in names) + " |")
        lines.append("")
    lines += ["## Friedman / Nemenyi", ""]
    if error:
        lines += [f"Not computed: {error}", ""]
        return "\n".join(lines)
    fr = result["friedman"]
    key = result["block_key"]
    key = " × ".join(key) if isinstance(key, (list, tuple)) else str(key)
    lines.append(f"- blocks: {fr['n_blocks']} ({key}), models: {fr['k_models']}, "
                 f"dropped blocks with a missing value: {result['dropped_blocks']['count']}")
    lines.append(f"- Friedman χ² = {fr['statistic']:.3f}, p = {_p(fr['pvalue'])} "
                 f"(Iman–Davenport F = {_p(fr['iman_davenport_F'])}, p = {_p(fr['iman_davenport_pvalue'])})")
    verdict = ("the models differ significantly" if fr["pvalue"] is not None and fr["pvalue"] < result["alpha"]
               else "no significant difference between the models")
    lines.append(f"- at α = {result['alpha']}: {verdict}; critical difference of mean ranks "
                 f"CD = {result['critical_difference']:.3f}")
    lines += ["", "| model | mean rank |", "|---|---:|"]
    lines += [f"| {m} | {r:.2f} |" for m, r in result["mean_rank"].items()]
    models = list(result["mean_rank"])
    lines += ["", "Nemenyi p-values (bold: p < α):", "", "| | " + " | ".join(models) + " |",
              "|---|" + "---:|" * len(models)]
    for a in models:
        cells = []
        for b in models:
            p = result["nemenyi"][a][b]
            cells.append("–" if a == b else (f"**{_p(p)}**" if p < result["alpha"] else _p(p)))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "![critical-difference diagram](cd_diagram.png)", ""]
    return "\n".join(lines)


def build(paths: list[str], out: str | Path, metric_sets: dict | None = None, block_by_seed: bool = False,
          lower_is_better=(), alpha: float = 0.05, gt: dict[str, str] | None = None,
          offsets: list[str] = (), levels: list[str] = (), k_sweep: dict[str, list[str]] | None = None) -> dict | None:
    """The report; ``gt`` (dataset -> headline-split annotations) counts the windows of the length breakdown
    (sdst.reporting.lengths), ``offsets`` are the offsets.json of SDST-family models (sdst.diagnose, figure beside),
    ``levels`` their levels.json (sdst.levels), ``k_sweep`` the lines of the Fig. 3 section (label -> models)."""
    from sdst import levels as refinement
    from sdst.diagnose import report_section
    from sdst.reporting import k_sweep as sweep
    from sdst.reporting import budget, lengths, ranking, stats
    from sdst.reporting.cd_diagram import plot_cd_diagram

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metric_sets = {**DEFAULT_METRICS, **(metric_sets or {})}
    rows, tables = collect(paths, metric_sets)
    with (out.parent / "scores.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["model", "dataset", "metric", "seed", "value"])
        writer.writeheader()
        writer.writerows(rows)
    result, error = None, None
    try:
        result = stats.friedman_nemenyi(rows, lower_is_better=lower_is_better, block_by_seed=block_by_seed,
                                        alpha=alpha)
        plot_cd_diagram(result, out.parent / "cd_diagram.png")
    except stats.ScoresError as err:
        error = str(err)
        _placeholder(out.parent / "cd_diagram.png", f"No critical-difference diagram: {error}")
    by_length = lengths.breakdown(paths, gt)
    summary = stats._jsonable(result) if result else {"error": error}
    (out.parent / "report.json").write_text(json.dumps({**summary, "by_length": stats._jsonable(by_length)},
                                                       indent=2) + "\n")
    sections = [render(tables, result, metric_sets, error), budget.section(paths), lengths.render(by_length),
                ranking.section(paths),
                sweep.section(paths, list(levels), k_sweep or {}, out.parent),
                report_section([p for p in offsets if p.endswith(".json")], out.parent),
                refinement.report_section(levels)]
    out.write_text("\n".join(s.rstrip("\n") + "\n" for s in sections if s))
    write_html(out, "Significance report")  # the same page for Snakemake's report, CD diagram embedded
    return result


def _placeholder(path: Path, message: str) -> None:
    """A figure saying why there is no diagram (the workflow declares the file, the report shows it)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 1.6))
    fig.text(0.02, 0.5, textwrap.fill(message, 90), va="center", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.reporting.significance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", nargs="+", required=True, help="aggregated metrics.json of each (dataset, model)")
    p.add_argument("--out", required=True, help="report.md (scores.csv, report.json, cd_diagram.png beside it)")
    p.add_argument("--metric-set", action="append", default=[], metavar="KIND=M1,M2",
                   help="metrics compared for a dataset kind (qvh or mr)")
    p.add_argument("--block-by-seed", action="store_true")
    p.add_argument("--lower-is-better", default="")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--gt", action="append", default=[], metavar="DATASET=FILE",
                   help="a dataset's headline-split annotations (GT windows per length range)")
    p.add_argument("--offsets", nargs="*", default=[],
                   help="offsets.json of every seed (and the .png shown) of SDST-family models "
                        "(python -m sdst.diagnose)")
    p.add_argument("--levels", nargs="*", default=[],
                   help="levels.json of every seed of SDST-family models (python -m sdst.levels)")
    p.add_argument("--k-sweep", action="append", default=[], metavar="LABEL=M1,M2",
                   help="a line of the Fig. 3 section: its label and models (their levels.json give K)")
    args = p.parse_args(argv)
    sets = {}
    for item in args.metric_set:
        kind, _, names = item.partition("=")
        sets[kind] = [n for n in names.split(",") if n]
    gt = dict(item.split("=", 1) for item in args.gt)
    result = build(args.metrics, args.out, sets, args.block_by_seed,
                   [m for m in args.lower_is_better.split(",") if m], args.alpha, gt, args.offsets, args.levels,
                   {label: [m for m in models.split(",") if m]
                    for label, _, models in (item.rpartition("=") for item in args.k_sweep)})
    if result:
        fr = result["friedman"]
        print(f"{args.out}: Friedman chi2 = {fr['statistic']:.3f}, p = {_p(fr['pvalue'])}, "
              f"{fr['n_blocks']} blocks, {fr['k_models']} models")
    else:
        print(f"{args.out}: written (statistics not computed, see the report)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
