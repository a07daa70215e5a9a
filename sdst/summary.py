"""Per-dataset results a person reads: one table of every model (mean ± std over seeds), the random baseline
and parameter counts, plus the extraction summary.

    python -m sdst.summary --dataset D --metrics results/D/M/metrics.json ... --extraction results/D/extraction.json
                           --out results/D/summary.md

Writes ``summary.md``, ``summary.csv`` (the same rows; mean and std in columns of their own) and
``summary.html`` (the same Markdown as a page, for Snakemake's report), and ``extraction.md``/``.html`` (videos,
clips and queries extracted, every failed video with its file and reason). The columns are the paper's
(Tab. 1 for QVHighlights, Tab. 2 for Charades-STA and TACoS: sdst.report.DEFAULT_METRICS); every reported
split of each model is a row.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from sdst.html import write_html
from sdst.report import DEFAULT_METRICS, metric_kind


def _num(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def rows(metrics_files: list[str]) -> tuple[list[str], list[dict]]:
    """(metric names, one row per model and split, then the random baseline of the headline split)."""
    loaded = [json.loads(Path(p).read_text()) for p in metrics_files]
    names = DEFAULT_METRICS[metric_kind(loaded[0]["metrics"])]
    out = []
    for m in loaded:
        for split, stats in m["splits"].items():
            out.append({"model": m["model"], "split": split, "seeds": len(m["seeds"]),
                        "parameters": m.get("training", {}).get("parameters"),
                        "metrics": {n: (stats.get(n, {}).get("mean"), stats.get(n, {}).get("std")) for n in names}})
    base = loaded[0].get("random_baseline")
    if base:
        out.append({"model": "random baseline", "split": base["split"], "seeds": None, "parameters": 0,
                    "metrics": {n: (base["metrics"].get(n), None) for n in names}})
    return names, out


def render(dataset: str, names: list[str], table: list[dict]) -> str:
    lines = [f"# Results: {dataset}", "",
             "Mean ± std over seeds (std with ddof = 1) of the paper's columns, from each model's "
             f"`results/{dataset}/<model>/metrics.json`; the random baseline draws windows and saliency at random "
             "(one draw, no std).", "",
             "| model | split | parameters | seeds | " + " | ".join(names) + " |",
             "|---|---|---:|---:|" + "---:|" * len(names)]
    for r in table:
        params = "–" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f} M" if r["parameters"] else "0"
        cells = [_num(mean) + ("" if std is None else f" ± {std:.2f}") for mean, std in r["metrics"].values()]
        lines.append(f"| {r['model']} | {r['split']} | {params} | {r['seeds'] or '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, names: list[str], table: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "split", "parameters", "seeds"] + [f"{n} {s}" for n in names for s in ("mean", "std")])
        for r in table:
            w.writerow([r["model"], r["split"], r["parameters"] if r["parameters"] is not None else "",
                        r["seeds"] or ""] + ["" if v is None else v for n in names for v in r["metrics"][n]])


def render_extraction(dataset: str, ex: dict) -> str:
    v, q = ex["videos"], ex["queries"]
    ident = ex.get("identity", {})
    lines = [f"# Feature extraction: {dataset}", "",
             f"Store `{ex['store']}` (identity {ex['identity_hash']}: backbone {ident.get('backbone')}, "
             f"{ident.get('clip_len')} s clips, layers {ident.get('vision_layers')}, pooling {ident.get('pooling')}).",
             "", "| | count |", "|---|---:|",
             f"| videos | {v['total']} |", f"| videos extracted by the last run | {v['extracted']} |",
             f"| videos already complete | {v['already_complete']} |", f"| videos failed | {v['failed']} |",
             f"| queries | {q['total']} |", f"| clips encoded by the last run | {ex['clips']} |",
             f"| seconds (sum over jobs) | {ex['seconds']:.1f} |", ""]
    if ex["failed_videos"]:
        lines += ["## Failed videos", "", "| video | file | reason |", "|---|---|---|"]
        lines += [f"| {f['vid']} | {f['file']} | {f['reason'].replace('|', '/')} |" for f in ex["failed_videos"]]
    else:
        lines.append("No video failed.")
    for key, what in (("clamped_videos", "Videos whose clips were clamped to the decodable frames"),
                      ("damaged_reextracted", "Damaged items found and re-extracted")):
        if ex.get(key):
            lines += ["", f"{what}: " + ", ".join(str(x.get("item", x)) if isinstance(x, dict) else str(x)
                                                 for x in ex[key])]
    return "\n".join(lines) + "\n"


def build(dataset: str, metrics_files: list[str], extraction: str, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names, table = rows(metrics_files)
    out.write_text(render(dataset, names, table))
    write_csv(out.with_suffix(".csv"), names, table)
    write_html(out, f"Results: {dataset}")
    ex_md = out.parent / "extraction.md"
    ex_md.write_text(render_extraction(dataset, json.loads(Path(extraction).read_text())))
    write_html(ex_md, f"Feature extraction: {dataset}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--metrics", nargs="+", required=True, help="results/D/<model>/metrics.json of each model")
    p.add_argument("--extraction", required=True, help="results/D/extraction.json")
    p.add_argument("--out", required=True, help="summary.md (.csv, .html and extraction.md/.html beside it)")
    args = p.parse_args(argv)
    build(args.dataset, args.metrics, args.extraction, args.out)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
