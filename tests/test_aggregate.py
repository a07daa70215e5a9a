"""Aggregation of a model's runs (sdst.reporting.aggregate) and the report section built on its best-window R1@0.7
(sdst.reporting.ranking), against values worked out by hand."""

from __future__ import annotations

import json

import pytest

from extract.annotations import AnnotationError
from sdst.reporting.aggregate import BEST_WINDOW, DISTINCT, aggregate
from sdst.reporting.ranking import section

GT = [{"qid": 1, "duration": 60, "relevant_windows": [[0, 10]]},
      {"qid": 2, "duration": 60, "relevant_windows": [[20, 30], [40, 50]]}]


def _run(root, seed, r17, windows, predictions=True):
    """A finished run: its evaluator metrics, summary and (optionally) predictions with their ground truth."""
    run = root / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "metrics_val.json").write_text(json.dumps({"brief": {"MR-full-R1@0.7": r17}}))
    (run / "train_summary.json").write_text(json.dumps({"parameters": 10, "best_epoch": 3, "mean_it_per_s": 2.0,
                                                        "device": "cpu"}))
    if predictions:
        pred = [{"qid": q, "pred_relevant_windows": w} for q, w in windows.items()]
        (run / "predictions_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pred))
        (run / "predictions_val.jsonl.gt.jsonl").write_text("".join(json.dumps(g) + "\n" for g in GT))
    return str(run)


def test_best_window_r1_per_seed_and_the_ranking_section(tmp_path):
    # seed 0: q1's second window hits (IoU 0.9), q2's window has IoU 0.6 with [40, 50]: 50 %; seed 1: both hit
    runs = [_run(tmp_path / "m", 1, 50.0, {1: [[0, 9, 0.9]], 2: [[40, 50, 0.8]]}),
            _run(tmp_path / "m", 0, 0.0, {1: [[30, 40, 0.9], [0, 9, 0.5]], 2: [[44, 50, 0.9]]})]
    out = aggregate("d", "m", runs, ["val"])
    assert out["seeds"] == [0, 1] and out["metrics"][BEST_WINDOW] == {"mean": 75.0, "std": 35.36,
                                                                       "values": [50.0, 100.0]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(out))
    text = section([str(path)])
    # lost to the ranking per seed: 50 − 0, 100 − 50 -> 50 ± 0
    # distinct windows: seed 0 q1 2 (no overlap), q2 1 -> 1.5; seed 1 1 and 1 -> 1.0; std 0.5 / sqrt(2) = 0.35
    assert out["metrics"][DISTINCT]["values"] == [1.5, 1.0]
    assert "| m | 25.00 ± 35.36 | 75.00 ± 35.36 | 50.00 ± 0.00 | 1.25 ± 0.35 |" in text
    # first windows: seed 0 q1 [30, 40] overlaps nothing (elsewhere), q2 [44, 50] IoU 0.6 with [40, 50] (loose);
    # seed 1 both hit -> hit 0, 100; loose 50, 0; elsewhere 50, 0
    assert out["metrics"]["MR-first-window-hit"]["values"] == [0.0, 100.0]
    assert out["metrics"]["MR-first-window-elsewhere"]["values"] == [50.0, 0.0]
    assert "## Where the first window lands" in text
    assert "| m | 50.00 ± 70.71 | 25.00 ± 35.36 | 0.00 ± 0.00 | 0.00 ± 0.00 | 25.00 ± 35.36 |" in text
    assert "per query kind" not in text  # not a generated events dataset


def test_runs_without_predictions_have_no_best_window_and_no_section(tmp_path):
    runs = [_run(tmp_path / "m", 0, 10.0, {}, predictions=False)]
    out = aggregate("d", "m", runs, ["val"])
    assert out["metrics"][BEST_WINDOW]["values"] == [None] and out["metrics"][BEST_WINDOW]["mean"] is None
    assert out["metrics"][DISTINCT]["values"] == [None]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(out))
    assert section([str(path)]) == ""


def test_a_damaged_predictions_file_is_named_with_its_line(tmp_path):
    run = _run(tmp_path / "m", 0, 10.0, {1: [[0, 9, 0.9]], 2: [[40, 50, 0.8]]})
    pred = tmp_path / "m" / "seed0" / "predictions_val.jsonl"
    pred.write_text(pred.read_text() + '{"qid": 3, "pred_relevant_windows": [[5]]}\n')
    with pytest.raises(AnnotationError, match=r"predictions_val.jsonl:3: "):
        aggregate("d", "m", [run], ["val"])
