"""Does a run fit the short moments of its own training queries? (issue 21 point 5; README "demo_hard")

    .venv/bin/python bench/fit_by_length.py results/demo_hard/{sdst,r2tuning}/seed0 \\
        --features cache/demo_hard/<hash>/summary.json [--split val] [--max-clips 5]

For each run, predicts the queries it was trained on (its train split without the held-out selection queries,
sdst.data.split_queries, with ``checkpoint_best.pt``; ``python -m sdst.infer`` underneath) and reads its
``predictions_<split>.jsonl``. Prints per ground-truth length in clips (sdst.reporting.by_clips), on both:
- found: the percent of windows one of the query's submitted windows reaches at IoU >= 0.7;
- saliency first: the percent whose best clip outscores every clip outside the query's ground truth.
A length a run misses on its training queries too is one it does not fit (not one it fails to generalise to);
where its saliency has the moment and its windows miss it, the loss is in how the windows are predicted.
Run from the workflow's root (the run's annotation paths are relative to it). Inference only: about a second
per run on one core for demo_hard.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import tempfile
from pathlib import Path

from sdst.checkpoint import load_checkpoint
from sdst.data import split_queries
from sdst.evaluate import load_jsonl
from sdst.infer import run_split
from sdst.reporting.by_clips import found_by_clips, saliency_first


def training_predictions(run: Path, features: str, device: str) -> tuple[list[dict], list[dict], float]:
    """(records, ground truth) of the queries the run was fitted on, and the dataset's clip length."""
    data = load_checkpoint(run / "checkpoint_best.pt")["run"]["data"]
    fitted = {q.qid for q in split_queries(data)["train"]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train.jsonl"
        run_split(str(run / "checkpoint_best.pt"), features, data["splits"]["train"], str(out), device)
        records, gt = load_jsonl(out, "submission"), load_jsonl(f"{out}.gt.jsonl", "gt")
    keep = lambda rows: [r for r in rows if r["qid"] in fitted]  # noqa: E731
    return keep(records), keep(gt), float(data["clip_len"])


def row(name: str, table: dict[int, tuple[float, int]], max_clips: int) -> str:
    cells = [f"{table[n][0]:.1f} ({table[n][1]})" if n in table else "" for n in range(1, max_clips + 1)]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders holding checkpoint_best.pt and predictions_<split>.jsonl")
    p.add_argument("--features", required=True, help="extraction summary.json of the dataset's cache")
    p.add_argument("--split", default="val")
    p.add_argument("--max-clips", type=int, default=5, help="longest ground-truth length shown, in clips")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    head = " | ".join(f"{n} clip{'s' if n > 1 else ''}" for n in range(1, args.max_clips + 1))
    tables = {"found at IoU 0.7, % (windows)": [], "saliency first, % (windows)": []}
    for run in map(Path, args.runs):
        records, gt, clip_len = training_predictions(run, args.features, args.device)
        pred = run / f"predictions_{args.split}.jsonl"
        shown = {"train (fitted)": (records, gt), args.split: (load_jsonl(pred, "submission"),
                                                                 load_jsonl(f"{pred}.gt.jsonl", "gt"))}
        for part, (rec, truth) in shown.items():
            for (title, rows), fn in zip(tables.items(), (found_by_clips, saliency_first)):
                rows.append(row(f"{run} {part}", fn(rec, truth, clip_len), args.max_clips))
    for title, rows in tables.items():
        print(f"\n{title}\n\n| run | {head} |\n|---|" + "---:|" * args.max_clips)
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    _sys.exit(main())
