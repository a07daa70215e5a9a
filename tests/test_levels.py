"""Moment retrieval per refinement level (sdst.levels): each level's windows from that level's outputs, ranked by
p; the output row is what sdst.infer and the evaluator give the checkpoint."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import torch

from conftest import ROOT, make_synthetic_cache, synthetic_checkpoint, synthetic_run
from extract.annotations import load_annotations
from sdst.checkpoint import save_checkpoint
from sdst.data import FeatureDataset, cache_info
from sdst.evaluate import evaluate
from sdst.infer import run_split
from sdst.levels import BEST, DISTINCT, level_records, run, slot_stats, slots_table, table
from sdst.metrics import best_window_recall, distinct_windows, windows_found
from sdst.model import build_model


class _Scripted(torch.nn.Module):
    """Two levels and two decoder queries with known outputs: level 1 predicts the whole video first, level 2 its
    first tenth first; the actionness reverses level 2's order."""

    levels = [-2, -1]

    def forward(self, video, video_mask, text, text_mask):
        b, t = video_mask.shape
        spans = lambda rows: torch.tensor(rows).expand(b, -1, -1)  # noqa: E731  (centre, width) of the valid length
        logits = torch.tensor([2.0, 0.0]).expand(b, -1)
        return {"aux_outputs": [{"pred_logits": logits, "pred_spans": spans([[0.5, 1.0], [0.25, 0.5]])}],
                "pred_logits": logits, "pred_spans": spans([[0.05, 0.1], [0.75, 0.5]]),
                "pred_actionness": torch.tensor([0.01, 1.0]).expand(b, -1), "saliency": torch.zeros(b, t)}


def test_each_level_is_read_from_its_own_outputs_and_ranked_by_p(tmp_path):
    cache = make_synthetic_cache(tmp_path / "cache", n_train=2, n_val=3)
    info = cache_info(cache["summary"])
    ds = FeatureDataset(load_annotations(cache["annotations"]["val"]), info.store, 2.0, "qvh", min_clips=0)
    (level1, level2), output = level_records(_Scripted(), ds, clip_len=2.0)
    p = [1 / (1 + math.exp(-2.0)), 0.5]
    for i, q in enumerate(ds.items):
        length = min(q.duration, ds[i]["video"].shape[1] * 2.0)
        first, second = level1[i]["pred_relevant_windows"], level2[i]["pred_relevant_windows"]
        assert first[0][:2] == [0.0, round(length, 4)] and first[0][2] == round(p[0], 6)
        assert first[1][:2] == [0.0, round(length / 2, 4)]
        assert second[0][:2] == [0.0, round(length / 10, 4)] and second[0][2] == round(p[0], 6)
        # the model's output ranks level 2 by sqrt(p · actionness) (Eq. 23): the second query comes first
        top = output[i]["pred_relevant_windows"][0]
        assert top[:2] == [round(length / 2, 4), round(length, 4)] and top[2] == round(math.sqrt(p[1] * 1.0), 6)


def test_the_output_row_is_what_inference_and_the_evaluator_give_the_checkpoint(tmp_path):
    cache = make_synthetic_cache(tmp_path / "cache", n_train=4, n_val=6)
    run_cfg = synthetic_run(cache["annotations"])
    ckpt = tmp_path / "checkpoint_best.pt"
    model = synthetic_checkpoint(ckpt, run_cfg)
    result = run(str(ckpt), "val", tmp_path / "out", features=cache["summary"])
    assert [lvl["cache_layer"] for lvl in result["levels"]] == [-4, -3, -2, -1] and result["queries"] == 6
    run_split(str(ckpt), cache["summary"], "val", str(tmp_path / "pred.jsonl"), device="cpu")
    read = lambda p: [__import__("json").loads(x) for x in open(p)]  # noqa: E731
    expected = evaluate(read(tmp_path / "pred.jsonl"), read(tmp_path / "pred.jsonl.gt.jsonl"), "qvh")["brief"]
    assert result["output"]["metrics"] == expected
    for row in (*result["levels"], result["output"]):  # the best window's R1 bounds the top-1 window's
        assert row[BEST] >= row["metrics"]["MR-full-R1@0.7"]
    assert (tmp_path / "out" / "levels.json").is_file()
    assert table(result).count("\n") == 2 + 4  # header, rule, 4 levels, output
    for row in (*result["levels"], result["output"]):
        assert 1 <= row[DISTINCT] <= 10
    # one row per decoder query; each query's first window is one of them; none hits more often than the best window
    slots = result["slots"]
    assert [s["query"] for s in slots] == list(range(model.cfg.num_queries))
    assert abs(sum(s["first"] for s in slots) - 100.0) < 0.1
    assert max(s["hit"] for s in slots) <= result["output"][BEST]
    assert slots[0]["reference"] == [round(x, 4) for x in model.r0.detach().sigmoid()[0].tolist()]
    assert slots_table(result).count("\n") == 1 + model.cfg.num_queries


def test_distinct_windows_and_decoder_query_statistics_by_hand():
    records = [{"qid": 1, "pred_relevant_windows": [[0, 10, .9], [0, 9, .8], [20, 30, .7], [1, 10, .6], [21, 30, .5]]},
               {"qid": 2, "pred_relevant_windows": [[0, 10, .9], [20, 30, .8], [20, 29, .7]]},
               {"qid": 3, "pred_relevant_windows": []}]
    # q1: [0, 9] and [1, 10] are within IoU 0.9 of [0, 10], [21, 30] of [20, 30] -> 2; q2: 2; q3: 0
    assert distinct_windows(records) == round(4 / 3, 2)
    # at 0.95 every window of q1 counts ([1, 10] has IoU 0.9 with [0, 10], 0.8 with [0, 9]); q2's copy has 0.9
    assert distinct_windows(records, 0.95) == round((5 + 3 + 0) / 3, 2)
    assert distinct_windows([]) is None
    gt = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[20, 30], [0, 4]]}]
    slots = [{"qid": 1, "windows": [[0, 10], [20, 30]], "scores": [0.9, 0.1]},  # query 0 first and right
             {"qid": 2, "windows": [[0, 10], [21, 30]], "scores": [0.2, 0.8]},  # query 1 first and right (IoU 0.9)
             {"qid": 1, "windows": [[0, 10], [5, 5]], "scores": [0.1, 0.9]}]  # query 1's window is empty: query 0
    assert slot_stats(slots, gt, [[0.1, 0.2], [0.7, 0.3]]) == [
        {"query": 0, "first": 66.67, "hit": 66.67, "reference": [0.1, 0.2], "length_s": [10.0, 10.0, 10.0]},
        # lengths 10 and 9 s (the empty window is not one): percentiles by linear interpolation between them
        {"query": 1, "first": 33.33, "hit": 33.33, "reference": [0.7, 0.3], "length_s": [9.1, 9.5, 9.9]}]


def test_windows_found_by_length_range_by_hand():
    """Per ground-truth window: q1's short window (4 s) is reached at IoU 4 / 4.5, its middle one (20 s) at 15 / 20,
    its long one (40 s) only at 0.5; q2 has no record, q3's 10-s window is short ((0, 10]) and reached exactly."""
    gt = [{"qid": 1, "relevant_windows": [[0, 4], [10, 30], [40, 80]]}, {"qid": 2, "relevant_windows": [[0, 2]]},
          {"qid": 3, "relevant_windows": [[50, 60]]}]
    records = [{"qid": 1, "pred_relevant_windows": [[40, 60, .9], [0, 4.5, .8], [10, 25, .7]]},
               {"qid": 3, "pred_relevant_windows": [[50, 60, .9]]}]
    assert windows_found(records, gt) == {"short": round(200 / 3, 2), "middle": 100.0, "long": 0.0}
    assert windows_found(records, gt, 0.9) == {"short": round(100 / 3, 2), "middle": 0.0, "long": 0.0}
    assert windows_found(records, gt[1:]) == {"short": 50.0, "middle": None, "long": None}


def test_models_without_levels_are_refused(tmp_path):
    cache = make_synthetic_cache(tmp_path / "cache", n_train=2, n_val=2)
    run_cfg = synthetic_run(cache["annotations"])
    run_cfg["model"] = {"arch": "actionformer", "name": "actionformer", "params": {"hidden_dim": 32}}
    model = build_model("actionformer", run_cfg["model"]["params"], 24, 20, 4)
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"run": run_cfg, "dims": {"video": 24, "text": 20, "layers": 4, "extraction": None},
                           "model": model.state_dict()})
    proc = subprocess.run([sys.executable, "-m", "sdst.levels", "--checkpoint", str(ckpt), "--split", "val",
                           "--out", str(tmp_path / "o"), "--features", cache["summary"]],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "no refinement levels" in proc.stderr and "actionformer" in proc.stderr


def test_report_section_gives_mean_and_std_over_seeds_and_the_actionness_difference(tmp_path):
    """Three seeds of one model, values chosen by hand: each cell is mean ± std (ddof 1) over the seeds, a seed
    without a value leaves the cell empty, and the output (ranked by actionness) is compared with the last level
    ranked by p seed by seed."""
    from sdst.levels import SHOWN, report_section

    paths = []
    for seed, (lvl2_r7, out_r7, out_map, long1) in enumerate([(40.0, 42.0, 30.0, 5.0), (50.0, 49.0, 31.0, None),
                                                              (60.0, 62.0, 29.0, 6.0)]):
        base = {k: 10.0 for k in SHOWN}
        result = {"model": "m", "dataset": "d", "seed": 2 - seed, "queries": 7, "levels": [
            {"level": 1, "cache_layer": -2, "metrics": {**base, "MR-long-mAP": long1}},
            {"level": 2, "cache_layer": -1, "metrics": {**base, "MR-full-R1@0.7": lvl2_r7}}],
            "output": {"ranked_by": "sqrt(p * actionness)", "metrics": {
                **base, "MR-full-R1@0.7": out_r7, "MR-full-mAP": out_map}}}
        path = tmp_path / f"levels{seed}.json"
        path.write_text(json.dumps(result))
        paths.append(str(path))
    text = report_section(paths)
    assert "### m on d (3 seeds: 0, 1, 2, 7 queries)" in text  # listed in seed order
    assert "| 1 (-2) | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 | 10.00 ± 0.00 | – |" in text
    assert "| 2 (-1) | 10.00 ± 0.00 | 50.00 ± 10.00 |" in text  # 40, 50, 60: std sqrt((100 + 0 + 100) / 2) = 10
    # 42, 49, 62: mean 51, std sqrt((81 + 4 + 121) / 2) = sqrt(103) = 10.15; mAP 30, 31, 29
    assert "| output, ranked by sqrt(p * actionness) | 10.00 ± 0.00 | 51.00 ± 10.15 | 30.00 ± 1.00 |" in text
    # output − level 2: R1@0.7 +2, −1, +2 (mean 1, std sqrt((1 + 4 + 1) / 2) = 1.73); mAP 20, 21, 19 (std 1)
    expected = ("Output − level 2 ranked by p: MR-full-R1@0.7 +1.00 ± 1.73 (higher in 2 of 3 seeds); MR-full-mAP "
                "+20.00 ± 1.00 (higher in 3 of 3 seeds); MR-long-mAP +0.00 ± 0.00 (higher in 0 of 3 seeds).")
    assert expected in text


def test_best_window_recall_by_hand():
    """A query counts when any of its submitted windows reaches the IoU threshold with any GT window, whatever its
    rank: q1's second window (IoU 9/10), q2's window against its second GT window (9/10); q3's best is 69/100."""
    gt = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[20, 30], [40, 50]]},
          {"qid": 3, "relevant_windows": [[0, 100]]}]
    records = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.9], [0, 9, 0.5]]},
               {"qid": 2, "pred_relevant_windows": [[41, 50, 0.9]]},
               {"qid": 3, "pred_relevant_windows": [[0, 60, 0.9], [0, 69, 0.1]]}]
    assert best_window_recall(records, gt) == 66.67
    assert best_window_recall(records, gt, 0.5) == 100.0
    assert best_window_recall(records, gt, 0.95) == 0.0
    assert best_window_recall(records[:2], gt) == 66.67 and best_window_recall(records[1:], gt) == 33.33  # q1 missing
