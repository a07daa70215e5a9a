"""Per-dataset results a person reads: one table of every model (mean ± std over seeds), the random baseline
and parameter counts, plus the extraction summary.

    python -m sdst.reporting.summary --dataset D --metrics results/D/M/metrics.json ... \
        --extraction results/D/extraction.json
                           --out results/D/summary.md

Writes ``summary.md``, ``summary.csv`` (the same rows; mean and std in columns of their own) and
``summary.html`` (the same Markdown as a page, for Snakemake's report), and ``extraction.md``/``.html`` (videos,
clips and queries extracted, every failed video with its file and reason). The columns are the paper's
(Tab. 1 for QVHighlights, Tab. 2 for Charades-STA and TACoS: sdst.reporting.significance.DEFAULT_METRICS);
every reported
split of each model is a row. With ``--paper qvh|charades|tacos`` (config ``datasets.<d>.paper``) a second table
puts the paper's reported numbers (sdst.reporting.paper) beside the default model's, labelled as the paper's, with the
difference to the run's mean in its standard deviations and both selection protocols named (``--protocol``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from sdst.reporting.html import write_html
from sdst.reporting.paper import PAPER_PROTOCOL, REPORTED, difference
from sdst.reporting.significance import DEFAULT_METRICS, metric_kind


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


def render_paper(paper: str, names: list[str], table: list[dict], protocol: str | None) -> str:
    """The paper's reported numbers for the splits the run reports, beside the default model's (the first rows)."""
    model = table[0]["model"]
    lines = ["## Beside the paper (SDST, ICCV 2025)", "",
             f"The paper's numbers as it reports them (labelled *paper*), this run's `{model}` (mean ± std over "
             "seeds) and their difference, run − paper, in the run's standard deviations.", "",
             f"- model selection in this run: {protocol or 'as configured (splits.select)'}",
             f"- model selection in the paper: {PAPER_PROTOCOL}", "",
             "| | split | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    shown = 0
    for r in (r for r in table if r["model"] == model and r["split"] in REPORTED[paper]):
        where, reported = REPORTED[paper][r["split"]]
        cells = {n: reported.get(n) for n in names}
        lines.append(f"| paper ({where}) | {r['split']} | " + " | ".join(_num(v) for v in cells.values()) + " |")
        lines.append(f"| {model} (this run) | {r['split']} | " + " | ".join(
            _num(m) + ("" if s is None else f" ± {s:.2f}") for m, s in r["metrics"].values()) + " |")
        lines.append(f"| run − paper | {r['split']} | " + " | ".join(
            "–" if cells[n] is None else difference(*r["metrics"][n], cells[n]) for n in names) + " |")
        shown += 1
    if not shown:
        return ""
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
    source = (f"imported {ident['import']} files, no extraction ran; the files say backbone {ident.get('backbone')}"
              if ident.get("import") else f"backbone {ident.get('backbone')}")
    lines = [f"# Feature extraction: {dataset}", "",
             f"Store `{ex['store']}` (identity {ex['identity_hash']}: {source}, "
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
    if ex.get("failed_queries"):
        lines += ["", "## Query files that could not be imported", "", "| query | file | reason |", "|---|---|---|"]
        lines += [f"| {f['qid']} | {f['file']} | {f['reason'].replace('|', '/')} |" for f in ex["failed_queries"]]
    for key, what in (("clamped_videos", "Videos whose clips were clamped to the decodable frames"),
                      ("damaged_reextracted", "Damaged items found and re-extracted")):
        if ex.get(key):
            lines += ["", f"{what}: " + ", ".join(str(x.get("item", x)) if isinstance(x, dict) else str(x)
                                                 for x in ex[key])]
    return "\n".join(lines) + "\n"


def build(dataset: str, metrics_files: list[str], extraction: str, out: str | Path, paper: str | None = None,
          protocol: str | None = None) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names, table = rows(metrics_files)
    beside = render_paper(paper, names, table, protocol) if paper else ""
    out.write_text(render(dataset, names, table) + ("\n" + beside if beside else ""))
    write_csv(out.with_suffix(".csv"), names, table)
    write_html(out, f"Results: {dataset}")
    ex_md = out.parent / "extraction.md"
    ex_md.write_text(render_extraction(dataset, json.loads(Path(extraction).read_text())))
    write_html(ex_md, f"Feature extraction: {dataset}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.reporting.summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--metrics", nargs="+", required=True, help="results/D/<model>/metrics.json of each model")
    p.add_argument("--extraction", required=True, help="results/D/extraction.json")
    p.add_argument("--out", required=True, help="summary.md (.csv, .html and extraction.md/.html beside it)")
    p.add_argument("--paper", choices=sorted(REPORTED), help="show the paper's reported numbers of this dataset")
    p.add_argument("--protocol",
                   help="how this run selected its checkpoint, in words (sdst.reporting.paper.run_protocol)")
    args = p.parse_args(argv)
    build(args.dataset, args.metrics, args.extraction, args.out, args.paper, args.protocol)
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
