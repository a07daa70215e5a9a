"""Where the short moments are lost (issue 21 point 5; README "demo_hard"): per run, from its predictions on a split.

    .venv/bin/python bench/short_windows.py results/demo_hard/{sdst,r2tuning,af_sgp}/seed0 [--split val]

Prints, for the ground-truth windows of the short range ((0, 10] s, sdst.metrics.QVH_LENGTH_RANGES) of each run:
- found: the percent that a submitted window reaches at IoU >= 0.7 (sdst.metrics.windows_found);
- the width fit of sdst.reporting.aggregate.window_widths (median width ratio, percent more than twice as long,
  percent of submitted windows that are short, against the ground truth's percent);
- the missed ones by how their closest submitted window (highest IoU) misses: it contains the moment (too long),
  lies inside it (too short), overlaps it on one side (shifted), or nothing overlaps it;
- the median start and end errors (s) of that closest window, for the short and the middle range;
- windows read off the run's per-clip saliency with one rule for every model: each run of consecutive clips scoring
  above the query's mean + k std (k = 0.5 and 1), a clip being ``clip_len`` seconds; the percent of short windows
  they reach at IoU >= 0.7. This says whether the saliency (the dense stream) places the short moments, apart
  from the windows the model submits.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
from pathlib import Path

import numpy as np

from sdst.evaluate import load_jsonl
from sdst.metrics import temporal_iou, windows_found
from sdst.reporting.aggregate import closest_windows, length_range, window_widths


def saliency_windows(scores, k: float, clip_len: float) -> np.ndarray:
    """Runs of consecutive clips scoring above mean + k std, in seconds, (N, 2)."""
    s = np.asarray(scores, dtype=float)
    above = np.concatenate([[False], s > s.mean() + k * s.std(), [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    return (edges.reshape(-1, 2) * clip_len).astype(float)


def misses(records: list[dict], gt: list[dict]) -> dict[str, int]:
    out = {"too long": 0, "too short": 0, "shifted": 0, "nothing overlaps": 0}
    for w, b, iou in closest_windows(records, gt):
        if length_range(w[1] - w[0]) != "short" or iou >= 0.7:
            continue
        if b is None or iou == 0:
            out["nothing overlaps"] += 1
        elif b[0] <= w[0] and b[1] >= w[1]:
            out["too long"] += 1
        elif b[0] >= w[0] and b[1] <= w[1]:
            out["too short"] += 1
        else:
            out["shifted"] += 1
    return out


def boundary_errors(records: list[dict], gt: list[dict], name: str) -> tuple[float, float]:
    errs = [(abs(b[0] - w[0]), abs(b[1] - w[1])) for w, b, iou in closest_windows(records, gt)
            if length_range(w[1] - w[0]) == name and iou > 0]
    return tuple(float(np.median([e[i] for e in errs])) if errs else float("nan") for i in (0, 1))


def saliency_found(records: list[dict], gt: list[dict], k: float, clip_len: float) -> float:
    by_qid = {r["qid"]: r for r in records}
    hits = []
    for g in gt:
        r = by_qid.get(g["qid"])
        wins = saliency_windows(r["pred_saliency_scores"], k, clip_len) if r else np.zeros((0, 2))
        for w in np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2):
            if length_range(w[1] - w[0]) == "short":
                hits.append(bool(len(wins)) and float(temporal_iou(w[None], wins).max()) >= 0.7)
    return 100.0 * sum(hits) / max(len(hits), 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders holding predictions_<split>.jsonl and its .gt.jsonl")
    p.add_argument("--split", default="val")
    p.add_argument("--clip-len", type=float, default=2.0)
    args = p.parse_args(argv)
    print("| run | short found (%) | width ratio | over 2x (%) | submitted short (%) | misses: too long / too short "
          "/ shifted / none | start, end error short (s) | middle (s) | saliency windows found, k 0.5 / 1 (%) |")
    print("|---|---:|---:|---:|---:|---|---|---|---|")
    truth = None
    for run in args.runs:
        pred = Path(run) / f"predictions_{args.split}.jsonl"
        records, gt = load_jsonl(pred, "submission"), load_jsonl(f"{pred}.gt.jsonl", "gt")
        w, m = window_widths(records, gt), misses(records, gt)
        truth = w["MR-submitted-ground-truth-short"]
        es, em = boundary_errors(records, gt, "short"), boundary_errors(records, gt, "middle")
        sal = [saliency_found(records, gt, k, args.clip_len) for k in (0.5, 1.0)]
        print(f"| {run} | {windows_found(records, gt)['short']:.2f} | {w['MR-width-ratio-short']:.2f} | "
              f"{w['MR-width-over-2x-short']:.2f} | {w['MR-submitted-short']:.2f} | "
              f"{' / '.join(str(v) for v in m.values())} | {es[0]:.2f}, {es[1]:.2f} | {em[0]:.2f}, {em[1]:.2f} | "
              f"{sal[0]:.1f} / {sal[1]:.1f} |")
    print(f"\nground truth: {truth:.2f} % of the windows are short")
    return 0


if __name__ == "__main__":
    _sys.exit(main())
