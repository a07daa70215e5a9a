"""Moments by their length in clips (sdst.reporting.by_clips) against values worked out by hand, and
bench/fit_by_length.py on a checkpoint: its rows are the fitted training queries, the reported split and each
refinement level, and the widths of the decoder queries closest to the moments."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import ROOT, make_synthetic_cache, synthetic_checkpoint, synthetic_run
from extract.annotations import load_annotations
from sdst.data import holdout_split
from sdst.infer import run_split
from sdst.reporting.by_clips import first_by_window, found_by_clips, saliency_first

GT = [{"qid": 1, "relevant_windows": [[0, 2], [10, 14]]},  # 1 clip and 2 clips (clip_len 2 s)
      {"qid": 2, "relevant_windows": [[4, 6]]},
      {"qid": 3, "relevant_windows": [[0, 10]]}]  # 5 clips; no record
RECORDS = [{"qid": 1, "pred_relevant_windows": [[0, 2.4, 0.9], [20, 22, 0.5]],
            # clips 0 (first window), 5-6 (second); clip 3 is the best clip outside both: 0.8
            "pred_saliency_scores": [0.9, 0.1, 0.2, 0.8, 0.1, 0.5, 0.7, 0.0, 0.0, 0.0]},
           {"qid": 2, "pred_relevant_windows": [[4, 7, 0.9]],
            "pred_saliency_scores": [0.1, 0.1, 0.3, 0.3, 0.0]}]  # clip 2 ties clip 3, outside


def test_found_by_clips_by_hand():
    # [0, 2] vs [0, 2.4]: IoU 2 / 2.4 = 0.83, found; [4, 6] vs [4, 7]: 2 / 3 = 0.67, not; [10, 14]: nothing overlaps
    assert found_by_clips(RECORDS, GT, 2.0) == {1: (50.0, 2), 2: (0.0, 1), 5: (0.0, 1)}
    assert found_by_clips(RECORDS, GT, 2.0, threshold=0.6) == {1: (100.0, 2), 2: (0.0, 1), 5: (0.0, 1)}
    assert found_by_clips(RECORDS, GT, 1.0) == {2: (50.0, 2), 4: (0.0, 1), 10: (0.0, 1)}  # lengths in 1-s clips


def test_saliency_first_by_hand():
    # q1: 0.9 (clip 0) > 0.8, first; 0.7 (clips 5-6) < 0.8, not; q2: 0.3 ties 0.3, not; q3 has no record
    assert saliency_first(RECORDS, GT, 2.0) == {1: (50.0, 2), 2: (0.0, 1), 5: (0.0, 1)}
    # a clip is the window's when more than half of it is: [3.2, 6] owns clip 2 only, clip 1 stays outside (0.1)
    gt = [{"qid": 2, "relevant_windows": [[3.2, 6]]}]
    assert saliency_first(RECORDS, gt, 2.0) == {1: (0.0, 1)}  # 0.3 ties clip 3
    assert saliency_first([{**RECORDS[1], "pred_saliency_scores": [0.1, 0.5, 0.3, 0.2, 0.0]}], gt, 2.0) == \
        {1: (0.0, 1)}  # clip 1 (0.5, outside) beats clip 2
    assert saliency_first([{**RECORDS[1], "pred_saliency_scores": [0.1, 0.2, 0.3, 0.2, 0.0]}], gt, 2.0) == \
        {1: (100.0, 1)}


def test_first_by_window_by_hand():
    # q1's windows, in clips (clip_len 1): clip 0 (0.9) beats the best outside clip 3 (0.8); clips 5-6 (0.7) do not
    scores = RECORDS[0]["pred_saliency_scores"]
    assert first_by_window(scores, np.array([[0.0, 1.0], [5.0, 7.0]]), 1.0) == [True, False]
    assert first_by_window(scores, np.array([[0.0, 2.0], [10.0, 14.0]]), 2.0) == [True, False]  # s, 2-s clips
    assert first_by_window(RECORDS[1]["pred_saliency_scores"], np.array([[4.0, 6.0]]), 2.0) == [False]  # a tie


def test_fit_by_length_reads_the_fitted_training_queries_and_the_reported_split(tmp_path):
    cache = make_synthetic_cache(tmp_path / "cache", n_train=12, n_val=4)
    run_cfg = synthetic_run(cache["annotations"])
    run = tmp_path / "run"
    run.mkdir()
    synthetic_checkpoint(run / "checkpoint_best.pt", run_cfg)
    run_split(str(run / "checkpoint_best.pt"), cache["summary"], "val", str(run / "predictions_val.jsonl"), "cpu")
    proc = subprocess.run([sys.executable, "bench/fit_by_length.py", str(run), "--features", cache["summary"],
                           "--max-clips", "8"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found, rest = proc.stdout.split("saliency first, %", 1)
    first, by_level = rest.split("by refinement level")
    train = load_annotations(cache["annotations"]["train"])
    fitted, held = holdout_split(train, 0.25)
    assert fitted and held  # the held-out selection queries are left out, and there are some
    for table in (found, first):
        row = next(line for line in table.splitlines() if "train (fitted)" in line)
        assert sum(int(c.split("(")[1].strip().rstrip(")")) for c in row.split("|")[2:-1] if c.strip()) == len(fitted)
    # one row per refinement level; the last level's windows are the model's (ranked otherwise: the same ones found)
    levels = [line for line in by_level.splitlines() if line.startswith(f"| {run} level")]
    assert [line.split(" | ")[0] for line in levels] == [f"| {run} level {i}" for i in (1, 2, 3, 4)]
    fitted_row = next(line for line in found.splitlines() if "train (fitted)" in line)
    assert levels[-1].split(" | ")[1:] == fitted_row.split(" | ")[1:]
    # the width trajectories: R^0 and the 4 levels, one row per moment length, the windows of the fitted queries
    widths, matched = proc.stdout.split("closest to each moment")[1].split("the matcher assigns")
    matched, located = matched.split("by where their centre is")
    widths = [line for line in widths.splitlines() if line.startswith(f"| {run}")]
    assert sum(int(line.split(" | ")[2]) for line in widths) == len(fitted)
    assert all(len(line.split(" | ")[3].split(" / ")) == 5 for line in widths)
    # the matched queries: every window of the fitted queries is assigned one (6 queries, one window per query)
    matched = [line.strip("| ").split(" | ") for line in matched.splitlines() if line.startswith(f"| {run}")]
    assert sum(int(cells[2]) for cells in matched) == len(fitted)
    assert all(0 <= float(c[4]) <= 1 and 0 <= float(c[5]) <= 100 and 1 <= int(c[6]) <= 6 for c in matched)
    assert all(float(c[7]) >= 0 and 0 <= float(c[8]) <= 100 and 0 <= float(c[9]) <= 1 and 0 <= float(c[10]) <= 1
               for c in matched)
    # split by the centre: the two parts are the matched windows of each length, and their saliency-first shares
    # add up to the records' (the saliency the model outputs is what the records keep)
    located = [line.strip("| ").split(" | ") for line in located.splitlines() if line.startswith(f"| {run}")]
    assert [c[1] for c in located] == [c[1] for c in matched]
    assert [int(c[2]) + int(c[6]) for c in located] == [int(c[2]) for c in matched]
    first_row = [c.strip() for c in next(line for line in first.splitlines() if "train (fitted)" in line).split("|")]
    for c in located:
        n, near, far = int(c[1]), int(c[2]), int(c[6])
        hits = (near * float(c[5]) if near else 0) + (far * float(c[9]) if far else 0)
        assert abs(hits / (near + far) - float(first_row[1 + n].split(" (")[0])) < 0.15
    read = lambda p: [json.loads(x) for x in open(p)]  # noqa: E731
    val = found_by_clips(read(run / "predictions_val.jsonl"), read(run / "predictions_val.jsonl.gt.jsonl"), 2.0)
    row = next(line for line in found.splitlines() if line.startswith(f"| {run} val"))
    assert [c.strip() for c in row.split("|")[2:-1]] == [f"{val[n][0]:.1f} ({val[n][1]})" if n in val else ""
                                                         for n in range(1, 9)]
