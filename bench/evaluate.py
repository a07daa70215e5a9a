"""Benchmark: sdst.evaluate on the QVHighlights val golden predictions (1,550 queries x 10 windows).

Times ``evaluate()`` (best of 5) and loading the two JSON-lines files (best of 5) separately, and checks
that the brief numbers still match the official evaluator's golden output. Target: <= 1 s on one core::

    taskset -c 0 .venv/bin/python bench/evaluate.py
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import json
import time
from pathlib import Path

from sdst.evaluate import evaluate, load_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "qvhighlights"


def _best_of(n: int, fn):
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with highlight_val_release.jsonl and golden/")
    args = parser.parse_args(argv)

    preds_path = args.data / "golden" / "sample_val_preds.jsonl"
    gt_path = args.data / "highlight_val_release.jsonl"
    load_s, (submission, ground_truth) = _best_of(
        args.repeats, lambda: (load_jsonl(preds_path, kind="submission"), load_jsonl(gt_path, kind="gt")))
    eval_s, metrics = _best_of(args.repeats, lambda: evaluate(submission, ground_truth, "qvh"))

    golden = json.loads((args.data / "golden" / "sample_val_preds_metrics_raw.json").read_text())["brief"]
    worst = max(abs(metrics["brief"][k] - v) for k, v in golden.items())
    print(f"evaluate qvh val ({len(ground_truth)} queries): {eval_s:.2f} s (best of {args.repeats}), "
          f"load {load_s:.2f} s")
    print(f"golden brief: {'match' if worst <= 0.01 else 'MISMATCH'} (max abs diff {worst:.2f})")
    return 0 if worst <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
