"""Aggregation of a model's runs (sdst.reporting.aggregate) and the report sections built on its best-window R1@0.7
(sdst.reporting.ranking) and its runs' training budget (sdst.reporting.budget), against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extract.annotations import AnnotationError
from sdst.reporting.aggregate import BEST_WINDOW, DISTINCT, aggregate, window_widths
from sdst.reporting.budget import BudgetError, section as budget_section
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
    # the three ground-truth windows are all short (10 s): found 1 of 3 (seed 0: q1's), 2 of 3 (seed 1: q1's, q2's
    # [40, 50]) -> 50.00 ± 23.57; no middle or long windows
    assert out["metrics"]["MR-windows-found-short"]["values"] == [33.33, 66.67]
    assert "| m | 50.00 ± 23.57 | – | – |" in text
    # widths: seed 0 q1 [0, 10] best [0, 9] (0.9), q2 [40, 50] best [44, 50] (0.6), [20, 30] overlapped by nothing
    # -> median 0.75; seed 1 0.9 and [40, 50] itself (1.0) -> 0.95; every submitted window is short
    row = "| m | 0.85 ± 0.14 | – | – | 0.00 ± 0.00 | – | – | 100.00 ± 0.00 | 0.00 ± 0.00 | 0.00 ± 0.00 |"
    assert row in text
    assert "the ground truth's windows: short 100.00 %, middle 0.00 %, long 0.00 %" in text
    assert "| short (0, 10] | middle (10, 30] | long (30, 150] |" in text
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


def _log(run, scores, best, epochs):
    """A run's train_log.csv (only the selection score matters here) and the summary that goes with it."""
    run = Path(run)
    (run / "train_log.csv").write_text("epoch,train_loss,select_score\n"
                                       + "".join(f"{i},1.0,{s}\n" for i, s in enumerate(scores, 1)))
    summary = json.loads((run / "train_summary.json").read_text())
    summary.update(best_epoch=best, epochs_trained=len(scores), epochs=epochs)
    (run / "train_summary.json").write_text(json.dumps(summary))


def test_training_budget_per_run_and_its_report_section(tmp_path):
    # seed 0: improvements at epochs 1, 2, 5 (11 and 11.0 are not higher than 12): waits 1 and 3, best 5, stopped by
    # patience 2 after epoch 7 of 10; seed 1: improvements at 1 and 4, the 5-epoch cap reached
    runs = [_run(tmp_path / "m", s, 10.0, {}, predictions=False) for s in (0, 1)]
    _log(runs[0], [10, 12, 11, 11.0, 15, 14, 14], best=5, epochs=10)
    _log(runs[1], [3, 2, 1, 4, 4], best=4, epochs=5)
    out = aggregate("d", "m", runs, ["val"])
    assert out["training"]["runs"] == [
        {"seed": 0, "best_epoch": 5, "epochs_trained": 7, "epochs": 10, "at_cap": False, "longest_wait": 3},
        {"seed": 1, "best_epoch": 4, "epochs_trained": 5, "epochs": 5, "at_cap": True, "longest_wait": 3}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(out))
    text = budget_section([str(path)])
    assert "## Training budget" in text and "### d" in text
    # the longest wait over seeds names its seed (the first of equal ones)
    assert "| m | 2 | 5 (7), 4 (5) | 3 (seed 0) | seed 1: best 4 of 5 |" in text


def test_a_training_log_that_disagrees_with_its_summary_is_named(tmp_path):
    run = _run(tmp_path / "m", 0, 10.0, {}, predictions=False)
    _log(run, [1, 2, 3], best=2, epochs=10)  # the log's best epoch is 3
    with pytest.raises(BudgetError, match=r"seed0/train_log.csv: the best selection score is at epoch 3, "
                                          r"train_summary.json selected epoch 2"):
        aggregate("d", "m", [run], ["val"])
    # a summary written before it held the epochs trained (improvements at 1, 2, 3: waits of 1): the cap is unknown
    summary = tmp_path / "m" / "seed0" / "train_summary.json"
    summary.write_text(json.dumps({"parameters": 10, "best_epoch": 3, "mean_it_per_s": 2.0, "device": "cpu"}))
    path = tmp_path / "m.json"
    path.write_text(json.dumps(aggregate("d", "m", [run], ["val"])))
    assert "| m | 1 | 3 (–) | 1 (seed 0) | – |" in budget_section([str(path)])


def test_window_widths_by_hand():
    """q1's 4-s window is overlapped most by [0, 4.4] (ratio 1.1), its 20-s one by [10, 25] (0.75), its 40-s one by
    [40, 60] (0.5); q2 has no record (left out of the ratios, counted in the ground truth's shares); q3's 10-s window
    (short: (0, 10]) by [50, 60] (1.0); q4's 4-s window by [0, 10] (2.5, more than twice as long)."""
    gt = [{"qid": 1, "relevant_windows": [[0, 4], [10, 30], [40, 80]]}, {"qid": 2, "relevant_windows": [[0, 2]]},
          {"qid": 3, "relevant_windows": [[50, 60]]}, {"qid": 4, "relevant_windows": [[0, 4]]}]
    records = [{"qid": 1, "pred_relevant_windows": [[40, 60, .9], [0, 4.4, .8], [10, 25, .7]]},
               {"qid": 3, "pred_relevant_windows": [[50, 60, .9], [45, 70, .5]]},
               {"qid": 4, "pred_relevant_windows": [[0, 10, .9]]}]
    out = window_widths(records, gt)
    # short ratios 1.1, 1.0, 2.5 -> median 1.1, one of three over 2x; submitted lengths 20, 4.4, 15, 10, 25, 10 ->
    # short 3 of 6, middle 3 of 6; ground truth 4, 20, 40, 2, 10, 4 -> short 4 of 6, middle 1, long 1
    assert out == {"MR-width-ratio-short": 1.1, "MR-width-over-2x-short": 33.33, "MR-submitted-short": 50.0,
                   "MR-submitted-ground-truth-short": 66.67,
                   "MR-width-ratio-middle": 0.75, "MR-width-over-2x-middle": 0.0, "MR-submitted-middle": 50.0,
                   "MR-submitted-ground-truth-middle": 16.67,
                   "MR-width-ratio-long": 0.5, "MR-width-over-2x-long": 0.0, "MR-submitted-long": 0.0,
                   "MR-submitted-ground-truth-long": 16.67}
    assert window_widths([], gt[1:2])["MR-width-ratio-short"] is None  # nothing overlaps: no ratio
