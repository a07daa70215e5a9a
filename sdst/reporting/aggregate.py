"""Per-seed metrics -> one JSON per dataset and model: mean, std (ddof = 1) and per-seed values.

``python -m sdst.reporting.aggregate --dataset D --model M --runs DIR... --splits val [test]
--out results/D/M/metrics.json [--baseline results/D/random_baseline/metrics.json]
[--extraction results/D/extraction.json]``. The first split is the headline (``metrics``); every split is under
``splits``. Run summaries (best epoch, parameters, it/s; per run the epochs trained and the longest wait between
two improvements of the selection score, sdst.reporting.budget) and the queries left out for
lack of features (failed or missing videos) are carried along. Beside the evaluator's metrics, each split gets
``MR-best-window-R1@0.7`` from the run's ``predictions_<split>.jsonl`` and its ``.gt.jsonl``: the share of queries
where one of the submitted windows reaches IoU ≥ 0.7 with a ground-truth window (sdst.metrics.best_window_recall),
the R1@0.7 a perfect ranking of the submitted windows would give, ``MR-distinct-windows``, how many of the
submitted windows are distinct (sdst.metrics.distinct_windows), ``MR-windows-found-<short|middle|long>``, the share of
the ground-truth windows of each length range that a submitted window reaches (sdst.metrics.windows_found),
``MR-width-ratio-<range>`` and ``MR-submitted-<range>``, whether the windows are as long as the moments
(window_widths: the best-overlapping window's width over the moment's, the share of submitted windows per range), and
where the first window lands (sdst.first_window: ``MR-first-window-<category>``; with ``--demo-spec``, the
generator's spec of an events dataset, also the events it lands on and R1@0.7 per query kind and per asked change,
``MR-R1@0.7-query-<kind>`` and ``MR-R1@0.7-change-<type>``, with their queries counted in ``_query_groups``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sdst.first_window import GROUPS, PREFIX as FIRST_PREFIX
from sdst.metrics import (QVH_LENGTH_RANGES, best_window_recall, distinct_windows, submitted_windows, temporal_iou,
                          windows_found)
from sdst.reporting.budget import run_budget

BEST_WINDOW = "MR-best-window-R1@0.7"
DISTINCT = "MR-distinct-windows"
FOUND = "MR-windows-found-"  # + short, middle, long (sdst.metrics.windows_found)
WIDTH = "MR-width-ratio-"  # + short, middle, long (window_widths)
WIDE = "MR-width-over-2x-"  # + short, middle, long (window_widths)
SUBMITTED = "MR-submitted-"  # + short, middle, long, and "ground-truth" + the same (window_widths)
# in the JSON, not the log's line
NOT_PRINTED = ("_", FIRST_PREFIX, FOUND, WIDTH, WIDE, SUBMITTED, *(prefix for prefix, _ in GROUPS.values()))


def windows(run: str | Path, split: str, demo_spec: dict | None = None) -> tuple[dict, dict | None]:
    """({best-window R1@0.7, distinct windows, first-window shares}, queries per group or None) of the run's
    predictions on a split; the values None (and no shares) without its predictions and their ground truth.
    ``demo_spec``: the generator's spec of a generated dataset (an events one tells the events,
    sdst.first_window.plans_for)."""
    from sdst.evaluate import load_jsonl  # validated: a bad line is named with its file and number
    from sdst.first_window import breakdown, group_sizes, plans_for

    pred = Path(run) / f"predictions_{split}.jsonl"
    gt_path = pred.with_name(pred.name + ".gt.jsonl")
    if not (pred.is_file() and gt_path.is_file()):
        return {BEST_WINDOW: None, DISTINCT: None}, None
    records, gt = load_jsonl(pred, "submission"), load_jsonl(gt_path, "gt")
    by_qid = plans_for(demo_spec, gt, str(gt_path))
    found = {FOUND + name: value for name, value in windows_found(records, gt).items()}
    return ({BEST_WINDOW: best_window_recall(records, gt), DISTINCT: distinct_windows(records), **found,
             **window_widths(records, gt),
             **breakdown(records, gt, by_qid)},
            None if by_qid is None else group_sizes(gt, by_qid))


def length_range(length: float) -> str | None:
    """The length range (QVH_LENGTH_RANGES but "full": short, middle, long) of a window of ``length`` s, (min, max]."""
    return next((n for n, b in QVH_LENGTH_RANGES.items() if b and b[0] < length <= b[1]), None)


def closest_windows(records: list[dict], gt: list[dict]):
    """Per ground-truth window, in file order: (the window, the submitted window of its query that overlaps it most
    (highest IoU, ties to the one listed first) or None where the query has none, their IoU)."""
    windows = {r["qid"]: submitted_windows(r) for r in records}
    for g in gt:
        truth = np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2)
        pred = windows.get(g["qid"], np.zeros((0, 2)))
        iou = temporal_iou(truth, pred) if len(pred) else np.zeros((len(truth), 0))
        for window, row in zip(truth, iou):
            best = int(np.argmax(row)) if row.size else None
            yield window, (None if best is None else pred[best]), (0.0 if best is None else float(row[best]))


def window_widths(records: list[dict], gt: list[dict]) -> dict[str, float | None]:
    """Are the submitted windows as long as the moments? Per length range (QVH_LENGTH_RANGES but "full", a length in
    (min, max] s): ``MR-width-ratio-<range>``, the median over the range's ground-truth windows of the width of the
    submitted window of their query that overlaps them most (closest_windows) over their own width (2: twice as
    long; a window no submitted window overlaps is left out), and ``MR-width-over-2x-<range>`` the percent of those
    windows where it is more than twice as long; ``MR-submitted-<range>``, the percent of all submitted windows whose
    length is in the range, and ``MR-submitted-ground-truth-<range>``, that of the ground-truth windows. None where a
    range has no window (2 dp)."""
    ratios: dict[str, list[float]] = {}
    truth_ranges: list[str | None] = []
    for (start, end), best, iou in closest_windows(records, gt):
        name = length_range(end - start)
        truth_ranges.append(name)
        if name and iou > 0:
            ratios.setdefault(name, []).append((best[1] - best[0]) / (end - start))
    submitted = [length_range(e - s) for r in records for s, e in submitted_windows(r)]
    share = lambda names, name: round(100.0 * names.count(name) / len(names), 2) if names else None  # noqa: E731
    out: dict[str, float | None] = {}
    for name in (n for n, b in QVH_LENGTH_RANGES.items() if b):
        r = np.asarray(ratios.get(name, []))
        out[WIDTH + name] = round(float(np.median(r)), 2) if r.size else None
        out[WIDE + name] = round(100.0 * float((r > 2).mean()), 2) if r.size else None
        out[SUBMITTED + name] = share(submitted, name)
        out[SUBMITTED + "ground-truth-" + name] = share(truth_ranges, name)
    return out


def summarise(values: list[float]) -> dict:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return {"mean": round(float(arr.mean()), 2) if arr.size else None,
            "std": round(float(arr.std(ddof=1)), 2) if arr.size > 1 else 0.0 if arr.size else None,
            "values": values}


def aggregate(dataset: str, model: str, runs: list[str], splits: list[str], baseline: str | None = None,
              extraction: str | None = None, demo_spec: dict | None = None) -> dict:
    runs = sorted(runs, key=lambda r: int(Path(r).name.removeprefix("seed")))
    out = {"dataset": dataset, "model": model, "seeds": [int(Path(r).name.removeprefix("seed")) for r in runs],
           "headline_split": splits[0], "splits": {}}
    for split in splits:
        found = [windows(r, split, demo_spec) for r in runs]
        per_seed = [{**json.loads((Path(r) / f"metrics_{split}.json").read_text())["brief"], **w}
                    for r, (w, _) in zip(runs, found)]
        keys = list(dict.fromkeys(k for m in per_seed for k in m))
        out["splits"][split] = {k: summarise([m.get(k) for m in per_seed]) for k in keys}
        sizes = next((k for _, k in found if k), None)
        if sizes:
            out["splits"][split]["_query_groups"] = sizes
        info = Path(runs[0]) / f"predictions_{split}.jsonl.info.json"
        if info.is_file():
            i = json.loads(info.read_text())
            out["splits"][split]["_coverage"] = {"queries": i["queries"], "evaluated": i["predicted"],
                                                 "left_out_videos": i["left_out_videos"]}
    out["metrics"] = out["splits"][splits[0]]
    summaries = [json.loads((Path(r) / "train_summary.json").read_text()) for r in runs]
    out["training"] = {
        "parameters": summaries[0]["parameters"],
        "best_epoch": [s["best_epoch"] for s in summaries],
        "runs": [run_budget(r) for r in runs],  # selected epoch, epochs trained, waits (sdst.reporting.budget)
        "mean_it_per_s": summarise([round(s["mean_it_per_s"], 3) for s in summaries]),
        "device": summaries[0]["device"],
    }
    if extraction:
        ex = json.loads(Path(extraction).read_text())
        out["extraction"] = {"videos": ex["videos"], "failed_videos": ex["failed_videos"],
                             "identity_hash": ex["identity_hash"]}
    if baseline:
        out["random_baseline"] = {"split": splits[0], "metrics": json.loads(Path(baseline).read_text())["brief"]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.reporting.aggregate", description=__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--runs", nargs="+", required=True, help="run directories results/D/M/seedN")
    p.add_argument("--splits", nargs="+", required=True)
    p.add_argument("--baseline")
    p.add_argument("--extraction", help="the dataset's extraction summary (its failed videos are listed)")
    p.add_argument("--demo-spec", type=json.loads,
                   help="the generator's spec (JSON) of a generated dataset: of the events kind, where the first "
                        "window lands is told by the events of the video")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    result = aggregate(args.dataset, args.model, args.runs, args.splits, args.baseline, args.extraction,
                       args.demo_spec)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    m = result["metrics"]
    shown = ", ".join(f"{k} {v['mean']} ± {v['std']}" for k, v in m.items()
                      if not k.startswith(NOT_PRINTED) and v["mean"] is not None)
    print(f"{args.dataset}/{args.model} ({result['headline_split']}, {len(args.runs)} seeds): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
