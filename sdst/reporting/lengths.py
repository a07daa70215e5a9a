"""The significance report's breakdown by moment length (issue 21; the paper's Tab. L, §K): moment-retrieval mAP
on short / middle / long ground-truth windows, per model, and whether the models' ranking changes with length.

The ranges are the QVHighlights evaluator's (sdst.evaluate.QVH_LENGTH_RANGES: window length in (0, 10],
(10, 30], (30, 150] s), scored as ``MR-short-mAP``, ``MR-middle-mAP``, ``MR-long-mAP`` (each keeps only the GT
windows in its range; a range without any window has no value). Per dataset and range: mean ± std over seeds
of each model, the number of GT windows (and of queries with one) in the range on the headline split, and the
models' mean ranks with every seed a block (Friedman p from sdst.reporting.stats). The ranking of each range is compared
with the full-set ranking (``MR-full-mAP``, ranked the same way): Kendall's τ of the mean ranks and the pairs
of models in reverse order; the ranking "changes" when there is such a pair (and is not known when no range
could be ranked, e.g. with one seed). Datasets scored without ranges
(Charades-STA, TACoS: ``mr``) are skipped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

RANGES = ("short", "middle", "long")
METRICS = {name: f"MR-{name}-mAP" for name in (*RANGES, "full")}


def count_windows(gt_path: str | Path) -> dict:
    """{range: {"windows": n, "queries": q}}: GT windows whose length (end − start, s) is in the range's
    (min, max], and the queries keeping at least one (the evaluator's filter)."""
    from sdst.evaluate import load_jsonl  # the ground truth as the evaluator reads it
    from sdst.metrics import QVH_LENGTH_RANGES

    out = {name: {"windows": 0, "queries": 0} for name in RANGES}
    for rec in load_jsonl(gt_path, kind="gt"):
        lengths = [float(e) - float(s) for s, e in rec["relevant_windows"]]
        for name in RANGES:
            lo, hi = QVH_LENGTH_RANGES[name]
            n = sum(lo < x <= hi for x in lengths)
            out[name]["windows"] += n
            out[name]["queries"] += int(n > 0)
    return out


def _stat(metrics: dict, name: str) -> dict:
    entry = metrics.get(name) or {}
    return {"mean": entry.get("mean"), "std": entry.get("std"), "values": entry.get("values") or []}


def _ranks(table: dict, metric: str) -> dict:
    """Mean ranks (1 = best) with every seed a block, via sdst.reporting.stats; {} with the reason when not
    computable."""
    from sdst.reporting import stats

    rows = [{"model": model, "dataset": "-", "metric": metric, "seed": seed, "value": "" if v is None else v}
            for model, entry in table.items()
            for seed, v in zip(entry["seeds"], entry[metric]["values"] or [None] * len(entry["seeds"]))]
    try:
        result = stats.friedman_nemenyi(rows, block_by_seed=True)
    except stats.ScoresError as err:
        return {"error": str(err)}
    p = result["friedman"]["pvalue"]
    return {"mean_rank": result["mean_rank"], "blocks": result["friedman"]["n_blocks"],
            "friedman_p": None if p is None or math.isnan(p) else p}


def _compare(ranks: dict, full: dict) -> dict:
    """Kendall's τ between two mean-rank dicts and the pairs in strictly opposite order (a tie on one side is
    not a reversal)."""
    from scipy.stats import kendalltau

    models = [m for m in full if m in ranks]
    a, b = [ranks[m] for m in models], [full[m] for m in models]
    tau = kendalltau(a, b).statistic if len(models) > 1 else math.nan
    swaps = [[x, y] for i, x in enumerate(models) for y in models[i + 1:]
             if (ranks[x] - ranks[y]) * (full[x] - full[y]) < 0]
    return {"kendall_tau": None if math.isnan(tau) else float(tau), "swapped_pairs": swaps}


def breakdown(paths: list[str], gt: dict[str, str] | None = None) -> dict:
    """{dataset: {"split", "windows", "models": {model: {range: stat}}, "ranks": {range: ...}, "vs_full":
    {range: ...}, "ranking_changes": bool}} from the aggregated metrics.json of each (dataset, model)."""
    tables: dict = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        metrics = m["splits"][m["headline_split"]]
        if METRICS["short"] not in metrics:
            continue  # no length ranges for this dataset kind
        entry = {"seeds": m["seeds"], **{METRICS[r]: _stat(metrics, METRICS[r]) for r in METRICS}}
        tables.setdefault(m["dataset"], {"split": m["headline_split"], "models": {}})["models"][m["model"]] = entry
    out = {}
    for dataset, t in tables.items():
        full = _ranks(t["models"], METRICS["full"])
        ranks = {r: _ranks(t["models"], METRICS[r]) for r in RANGES}
        vs_full = {r: _compare(ranks[r]["mean_rank"], full["mean_rank"]) for r in RANGES
                   if "mean_rank" in ranks[r] and "mean_rank" in full}
        out[dataset] = {
            "split": t["split"],
            "windows": count_windows(gt[dataset]) if gt and dataset in gt else None,
            "models": {model: {r: e[METRICS[r]] for r in METRICS} for model, e in t["models"].items()},
            "ranks": {**ranks, "full": full},
            "vs_full": vs_full,
            # None: no range could be ranked against the full set (e.g. a single seed), so nothing is known
            "ranking_changes": any(v["swapped_pairs"] for v in vs_full.values()) if vs_full else None,
        }
    return out


def _fmt(stat: dict) -> str:
    return "–" if stat.get("mean") is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def render(result: dict) -> str:
    """The breakdown as Markdown (a section of the significance report)."""
    from sdst.metrics import QVH_LENGTH_RANGES

    if not result:
        return ""
    heads = [f"{r} ({QVH_LENGTH_RANGES[r][0]:g}, {QVH_LENGTH_RANGES[r][1]:g}] s" for r in RANGES] + ["full"]
    lines = ["## By moment length", "",
             "MR mAP on the ground-truth windows of each length range (the QVHighlights evaluator's `MR-short-mAP`, "
             "`MR-middle-mAP`, `MR-long-mAP`), mean ± std over seeds; mean ranks with every seed a block (1 = best).",
             ""]
    for dataset, d in result.items():
        lines += [f"### {dataset} ({d['split']} split)", ""]
        if d["windows"]:
            lines.append("GT windows (queries) per range: " + ", ".join(
                f"{r} {d['windows'][r]['windows']} ({d['windows'][r]['queries']})" for r in RANGES) + ".")
            lines.append("")
        lines.append("| model | " + " | ".join(heads) + " |")
        lines.append("|---|" + "---:|" * len(heads))
        for model, stats in d["models"].items():
            lines.append(f"| {model} | " + " | ".join(_fmt(stats[r]) for r in (*RANGES, "full")) + " |")
        lines += ["", "| mean rank | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
        for model in d["models"]:
            cells = []
            for r in (*RANGES, "full"):
                mr = d["ranks"][r].get("mean_rank", {})
                cells.append(f"{mr[model]:.2f}" if model in mr else "–")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
        for r in (*RANGES, "full"):
            rk = d["ranks"][r]
            if "error" in rk:
                lines.append(f"- {r}: ranks not computed ({rk['error']})")
                continue
            p = rk["friedman_p"]
            text = f"- {r}: {rk['blocks']} blocks, Friedman p = " + ("–" if p is None else f"{p:.3g}")
            if r in d["vs_full"]:
                v = d["vs_full"][r]
                tau = "–" if v["kendall_tau"] is None else f"{v['kendall_tau']:.2f}"
                pairs = "; ".join(f"{a} / {b}" for a, b in v["swapped_pairs"]) or "none"
                text += f"; Kendall τ with the full-set ranking {tau}; pairs in reverse order: {pairs}"
            lines.append(text)
        if d["ranking_changes"] is None:
            lines += ["", "Whether the ranking changes with moment length is not known: no range could be ranked "
                      "against the full set.", ""]
            continue
        verdict = "changes" if d["ranking_changes"] else "does not change"
        compared = ", ".join(r for r in RANGES if r in d["vs_full"])
        lines += ["", f"The ranking {verdict} with moment length (mean ranks of each range against the full set; "
                  f"ranges compared: {compared}).", ""]
    return "\n".join(lines)
