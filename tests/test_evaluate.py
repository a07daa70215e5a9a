"""Tests of sdst.evaluate against the official QVHighlights golden metrics and hand-worked cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdst.evaluate import AnnotationError, evaluate, load_jsonl
from sdst.metrics import paired_iou, temporal_iou

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
QVH_VAL = DATA / "qvhighlights" / "highlight_val_release.jsonl"
GOLDEN_PREDS = DATA / "qvhighlights" / "golden" / "sample_val_preds.jsonl"
GOLDEN_METRICS = DATA / "qvhighlights" / "golden" / "sample_val_preds_metrics_raw.json"


def _gt(qid, windows, duration=150, **extra):
    return {"qid": qid, "query": "q", "vid": "v", "duration": duration, "relevant_windows": windows, **extra}


def _pred(qid, windows, **extra):
    return {"qid": qid, "query": "q", "vid": "v", "pred_relevant_windows": windows, **extra}


def _flatten(block: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in block.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------------------------------
# Golden file (output of the official evaluator on the Moment-DETR sample val predictions)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN_METRICS.read_text())


@pytest.fixture(scope="module")
def golden_result():
    return evaluate(load_jsonl(GOLDEN_PREDS), load_jsonl(QVH_VAL), "qvh")


def test_golden_brief(golden, golden_result):
    assert set(golden_result["brief"]) == set(golden["brief"])
    for key, expected in golden["brief"].items():
        assert golden_result["brief"][key] == pytest.approx(expected, abs=0.01), key


def test_golden_detail(golden, golden_result):
    # every per-threshold / per-range number the official evaluator reports, in its layout under "full"
    expected = _flatten({k: v for k, v in golden.items() if k != "brief"})
    ours = _flatten(golden_result["full"])
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=0.01), key


# ---------------------------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------------------------


def test_iou_of_simple_windows():
    a = np.array([[0.0, 10.0]])
    b = np.array([[5.0, 15.0], [10.0, 20.0], [2.0, 4.0], [0.0, 10.0]])
    # [0,10]&[5,15]: inter 5, union 15 -> 1/3; touching at 10 -> 0; [2,4] inside -> 2/10; identical -> 1
    np.testing.assert_allclose(temporal_iou(a, b)[0], [1 / 3, 0.0, 0.2, 1.0])
    # paired (R1) IoU uses the hull as union: equal to the IoU when overlapping, 0 when disjoint
    np.testing.assert_allclose(paired_iou(np.repeat(a, 4, 0), b), [1 / 3, 0.0, 0.2, 1.0])
    np.testing.assert_allclose(paired_iou(np.array([[0.0, 2.0]]), np.array([[6.0, 8.0]])), [0.0])


def test_map_two_gt_windows_three_predictions():
    # GT G1=[0,10], G2=[20,30] (2 positives). Predictions in score order:
    #   p1 [0,10]  0.9: IoU(G1)=1       -> TP at every threshold
    #   p2 [0,10]  0.8: G1 already taken, IoU(G2)=0 -> FP
    #   p3 [20,28] 0.7: IoU(G2)=8/10=0.8 -> TP for thresholds <= 0.8, FP above
    # thr <= 0.8: precision [1, 1/2, 2/3] -> interpolated [1, 2/3, 2/3]; AP = (1 + 2/3) / 2 = 5/6
    # thr 0.85, 0.9, 0.95: TP only at rank 1 -> AP = 1/2
    # average over the 10 thresholds = (7 * 5/6 + 3 * 1/2) / 10 = 44/60
    sub = [_pred(1, [[0, 10, 0.9], [0, 10, 0.8], [20, 28, 0.7]])]
    res = evaluate(sub, [_gt(1, [[0, 10], [20, 30]])])
    mr = res["full"]["full"]["MR-mAP"]
    assert mr["0.5"] == pytest.approx(100 * 5 / 6, abs=0.005)
    assert mr["0.8"] == pytest.approx(100 * 5 / 6, abs=0.005)
    assert mr["0.85"] == pytest.approx(50.0)
    assert res["brief"]["MR-full-mAP"] == pytest.approx(100 * 44 / 60, abs=0.005)
    assert res["brief"]["MR-full-mAP@0.75"] == pytest.approx(83.33)
    # both GT windows are 10 s long: the short range (0,10] equals full, middle and long are empty
    assert res["brief"]["MR-short-mAP"] == pytest.approx(100 * 44 / 60, abs=0.005)
    assert res["brief"]["MR-middle-mAP"] is None and res["brief"]["MR-long-mAP"] is None
    assert "HL-min-Fair-mAP" not in res["brief"]  # no pred_saliency_scores -> no HD metrics


def test_length_ranges_filter_gt_windows_not_predictions():
    # GT [0,4] (short) and [10,30] (20 s, middle); predictions p1 [10,30] 0.9, p2 [0,4] 0.8.
    # full: both TP -> AP 1.  short keeps only GT [0,4]: p1 FP, p2 TP -> precision [0, 1/2] -> AP 1/2.
    # middle keeps only GT [10,30]: p1 TP -> AP 1. long: no GT window in (30,150] -> query dropped.
    # R1 (top-1 = p1): full 100 (best-overlapping GT), short 0, middle 100.
    sub = [_pred(7, [[10, 30, 0.9], [0, 4, 0.8]])]
    res = evaluate(sub, [_gt(7, [[0, 4], [10, 30]])])
    assert res["brief"]["MR-full-mAP"] == 100.0
    assert res["brief"]["MR-short-mAP"] == 50.0
    assert res["brief"]["MR-middle-mAP"] == 100.0
    assert res["brief"]["MR-long-mAP"] is None
    assert res["full"]["short"]["MR-R1"]["0.5"] == 0.0
    assert res["full"]["middle"]["MR-R1"]["0.5"] == 100.0
    assert res["brief"]["MR-full-R1@0.5"] == 100.0


def test_r1_hit_and_miss_at_thresholds():
    # top-1 [0,10] vs GT [0,16]: IoU 10/16 = 0.625 -> hit at 0.5..0.6, miss from 0.65 on
    res = evaluate([_pred(1, [[0, 10, 1.0]])], [_gt(1, [[0, 16]])])
    r1 = res["full"]["full"]["MR-R1"]
    assert [r1[t] for t in ("0.5", "0.55", "0.6", "0.65", "0.7")] == [100.0, 100.0, 100.0, 0.0, 0.0]
    assert res["brief"]["MR-full-R1@0.5"] == 100.0 and res["brief"]["MR-full-R1@0.7"] == 0.0


def test_ties_in_scores_keep_input_order():
    # two windows with equal score: the first in the input is the top-1
    gt = [_gt(1, [[20, 30]])]
    first_wrong = evaluate([_pred(1, [[0, 10, 0.5], [20, 30, 0.5]])], gt)
    first_right = evaluate([_pred(1, [[20, 30, 0.5], [0, 10, 0.5]])], gt)
    assert first_wrong["brief"]["MR-full-R1@0.5"] == 0.0
    assert first_right["brief"]["MR-full-R1@0.5"] == 100.0
    # mAP: FP then TP -> precision [0, 1/2] -> AP 1/2; TP first -> AP 1
    assert first_wrong["brief"]["MR-full-mAP"] == 50.0
    assert first_right["brief"]["MR-full-mAP"] == 100.0


def test_only_the_first_10_listed_windows_count():
    gt = [_gt(1, [[0, 10]])]
    misses = [[100, 110, 0.9 - 0.01 * i] for i in range(10)]  # 10 windows, IoU 0 with the GT
    # the exact window is listed 11th -> never read, whatever its score (official compute_mr_ap: [:10])
    for score in (0.1, 0.95):
        res = evaluate([_pred(1, misses + [[0, 10, score]])], gt)
        assert res["brief"]["MR-full-mAP"] == 0.0 and res["brief"]["MR-full-R1@0.5"] == 0.0


def test_unsorted_submission_with_ties_and_more_than_10_windows():
    # Listed: w1 [100,110] 0.5 (miss), w2 [0,10] 0.5 (hit, tied with w1), 8 misses at 0.1, then [0,10] 0.99
    # as the 11th. The official evaluator reads w1..w10 only. R1 takes w1, the first listed: IoU 0 -> 0.
    # AP sorts w1..w10 by score with a stable sort: w1, w2 (tie, listed order), then the misses:
    # FP, TP -> precision [0, 1/2] -> AP 1/2 at every threshold -> mAP 50.
    # (Sorting by score first would have given R1 100 and mAP 100 from the 11th window.)
    listed = [[100, 110, 0.5], [0, 10, 0.5]] + [[200 + 10 * i, 205 + 10 * i, 0.1] for i in range(8)]
    res = evaluate([_pred(1, listed + [[0, 10, 0.99]])], [_gt(1, [[0, 10]])])
    assert res["brief"]["MR-full-R1@0.5"] == 0.0 and res["brief"]["MR-full-R1@0.7"] == 0.0
    assert res["brief"]["MR-full-mAP"] == 50.0
    # the "mr" type (Charades-STA, TACoS) reads windows the same way: mIoU of the first listed window
    mr = evaluate([_pred(1, [[5, 10, 0.1], [0, 10, 0.9]])], [_gt(1, [[0, 10]])], dataset_type="mr")
    assert mr["brief"]["MR-mIoU"] == 50.0 and mr["brief"]["MR-R1@0.5"] == 100.0 and mr["brief"]["MR-R1@0.7"] == 0.0


def _official_mr(submission: list[dict], ground_truth: list[dict]) -> dict:
    """The official moment_detr standalone_eval semantics, written out loop by loop (no project code):
    compute_mr_ap reads pred_relevant_windows[:10], sorts them with list.sort(key=-score) (stable), matches
    each to the untaken GT window of highest IoU (argsort()[::-1]) and takes VOC-interpolated AP;
    compute_mr_r1 takes pred_relevant_windows[0] against the GT window it overlaps most (hull union)."""
    thresholds = [round(0.5 + 0.05 * i, 2) for i in range(10)]
    gt_by_qid = {d["qid"]: d["relevant_windows"] for d in ground_truth}
    aps, r1 = [], []
    for d in submission:
        gts = np.array(gt_by_qid[d["qid"]], dtype=float)
        preds = sorted(d["pred_relevant_windows"][:10], key=lambda w: -w[2])
        tp = np.zeros((10, len(preds)))
        fp = np.zeros((10, len(preds)))
        lock = -np.ones((10, len(gts)))
        for i, w in enumerate(preds):
            inter = np.clip(np.minimum(w[1], gts[:, 1]) - np.maximum(w[0], gts[:, 0]), 0, None)
            iou = inter / ((w[1] - w[0]) + (gts[:, 1] - gts[:, 0]) - inter)
            for t, thr in enumerate(thresholds):
                for j in iou.argsort()[::-1]:
                    if iou[j] < thr:
                        fp[t, i] = 1
                        break
                    if lock[t, j] >= 0:
                        continue
                    tp[t, i] = 1
                    lock[t, j] = i
                    break
                if fp[t, i] == 0 and tp[t, i] == 0:
                    fp[t, i] = 1
        ap = []
        for t in range(10):
            tps, fps = np.cumsum(tp[t]), np.cumsum(fp[t])
            prec = np.hstack([[0], tps / (tps + fps), [0]])
            rec = np.hstack([[0], tps / len(gts), [1]])
            for k in range(len(prec) - 2, -1, -1):
                prec[k] = max(prec[k], prec[k + 1])
            idx = np.where(rec[1:] != rec[:-1])[0] + 1
            ap.append(np.sum((rec[idx] - rec[idx - 1]) * prec[idx]))
        aps.append(ap)
        first = d["pred_relevant_windows"][0][:2]
        inter = np.clip(np.minimum(first[1], gts[:, 1]) - np.maximum(first[0], gts[:, 0]), 0, None)
        best = gts[np.argmax(inter / ((first[1] - first[0]) + (gts[:, 1] - gts[:, 0]) - inter))]
        hull = max(first[1], best[1]) - min(first[0], best[0])
        r1.append(max(0.0, min(first[1], best[1]) - max(first[0], best[0])) / hull)
    ap_thr = np.mean(aps, axis=0)
    return {"MR-full-mAP": float(f"{100 * ap_thr.mean():.2f}"), "MR-full-mAP@0.5": float(f"{100 * ap_thr[0]:.2f}"),
            "MR-full-mAP@0.75": float(f"{100 * ap_thr[5]:.2f}"),
            "MR-full-R1@0.5": float(f"{100 * np.mean(np.array(r1) >= 0.5):.2f}"),
            "MR-full-R1@0.7": float(f"{100 * np.mean(np.array(r1) >= 0.7):.2f}")}


@pytest.mark.parametrize("seed", range(5))
def test_random_unsorted_submissions_agree_with_the_official_semantics(seed):
    # windows on a 2-s grid (so IoUs tie), scores from 4 values (so scores tie), 1-25 windows per query,
    # listed in random order
    rng = np.random.default_rng(seed)
    gt, sub = [], []
    for qid in range(60):
        starts = rng.choice(np.arange(0, 140, 2), size=rng.integers(1, 4), replace=False)
        gt.append(_gt(qid, [[float(s), float(s + 2 * rng.integers(1, 6))] for s in sorted(starts)]))
        n = int(rng.integers(1, 26))
        s = rng.integers(0, 70, size=n) * 2.0
        e = s + rng.integers(1, 8, size=n) * 2.0
        scores = rng.choice([0.2, 0.4, 0.6, 0.8], size=n)
        sub.append(_pred(qid, [[float(a), float(b), float(c)] for a, b, c in zip(s, e, scores)]))
    ours = evaluate(sub, gt)["brief"]
    for key, expected in _official_mr(sub, gt).items():
        assert ours[key] == pytest.approx(expected, abs=0.01), key


def _hd_gt(qid, duration, clip_ids, scores):
    return _gt(qid, [[0, 2]], duration=duration, relevant_clip_ids=clip_ids, saliency_scores=scores)


def test_hit1_ties_pick_first_index():
    # 4 clips (duration 8); clip 1 scored [1,1,1] (below Fair), clip 2 scored [4,4,4]
    gt = [_hd_gt(1, 8, [1, 2], [[1, 1, 1], [4, 4, 4]])]
    tie = evaluate([_pred(1, [[0, 2, 1.0]], pred_saliency_scores=[0.0, 0.7, 0.7, 0.1])], gt)
    assert tie["brief"]["HL-min-Fair-Hit1"] == 0.0  # argmax of the tie = clip 1 -> miss
    clear = evaluate([_pred(1, [[0, 2, 1.0]], pred_saliency_scores=[0.0, 0.6, 0.7, 0.1])], gt)
    assert clear["brief"]["HL-min-VeryGood-Hit1"] == 100.0  # clip 2 -> hit at every level


def test_hit1_argmax_beyond_gt_clips_misses():
    # official: argmax over the whole prediction; an index past int(duration/2) clips is a miss
    gt = [_hd_gt(1, 8, [0, 1, 2, 3], [[4, 4, 4]] * 4)]
    res = evaluate([_pred(1, [[0, 2, 1.0]], pred_saliency_scores=[0.9, 0.8, 0.1, 0.5, 5.0])], gt)
    assert res["brief"]["HL-min-Fair-Hit1"] == 0.0
    assert res["brief"]["HL-min-Fair-mAP"] == 100.0  # all clips positive for every annotator -> AP 1


def test_hd_ap_tiny_example():
    # 4 clips, annotator scores per clip: c0 [4,0,4], c1 [0,0,4], c2 [3,0,4], c3 [1,0,4]
    # predictions [0.9, 0.8, 0.1, 0.5] -> ranking c0, c1, c3, c2
    # annotator 0, Fair (>=2) and Good (>=3): labels [1,0,1,0]; ranked labels 1,0,0,1
    #   precision 1, 1/2, 1/3, 2/4; recall rises at ranks 1 and 4; interpolated 1 and 1/2 -> AP 3/4
    # annotator 0, VeryGood: labels [1,0,0,0] -> c0 first -> AP 1
    # annotator 1: no positive clip -> AP 0 (official convention); annotator 2: all positive -> AP 1
    # Fair = Good = (3/4 + 0 + 1) / 3 = 58.33; VeryGood = (1 + 0 + 1) / 3 = 66.67; HIT@1: c0 -> hit
    gt = [_hd_gt(1, 8, [0, 1, 2, 3], [[4, 0, 4], [0, 0, 4], [3, 0, 4], [1, 0, 4]])]
    res = evaluate([_pred(1, [[0, 2, 1.0]], pred_saliency_scores=[0.9, 0.8, 0.1, 0.5])], gt)
    assert res["brief"]["HL-min-Fair-mAP"] == 58.33
    assert res["brief"]["HL-min-Good-mAP"] == 58.33
    assert res["brief"]["HL-min-VeryGood-mAP"] == 66.67
    assert res["brief"]["HL-min-VeryGood-Hit1"] == 100.0
    assert res["full"]["HL-min-Fair"] == {"HL-mAP": 58.33, "HL-Hit1": 100.0}


def test_hd_ap_ties_and_zero_padding():
    # 5 clips (duration 10), annotator 0 Fair labels [1,0,1,0,0] (others all 0 -> AP 0).
    # predictions cover 3 clips only: [0.5, 0.5, 0.9] -> padded with 0 for clips 3, 4.
    # thresholds: 0.9 {c2: +}, 0.5 {c0 +, c1 -}, 0 {c3, c4}
    #   precision 1/1, 2/3, 2/5; recall rises at 0.9 and 0.5 -> interpolated 1 and 2/3 -> AP 5/6
    # Fair mAP = (5/6 + 0 + 0) / 3 = 27.78
    gt = [_hd_gt(1, 10, [0, 2], [[2, 0, 0], [3, 0, 0]])]
    res = evaluate([_pred(1, [[0, 2, 1.0]], pred_saliency_scores=[0.5, 0.5, 0.9])], gt)
    assert res["brief"]["HL-min-Fair-mAP"] == 27.78
    assert res["brief"]["HL-min-Fair-Hit1"] == 100.0  # argmax c2 is positive for annotator 0


def test_mr_type_three_queries():
    # q1: top-1 [0,10] vs GT [0,10]                      IoU 1
    # q2: top-1 [5,15] vs GTs [40,50], [0,10]: best GT [0,10], IoU 5/15 = 1/3
    # q3: windows [10,16] 0.9 and [0,2] 0.5 -> top-1 [10,16] vs GT [10,20]: IoU 6/10 = 0.6
    # R1@0.3 = 3/3, R1@0.5 = 2/3 (q1, q3), R1@0.7 = 1/3 (q1); mIoU = (1 + 1/3 + 0.6) / 3 = 64.44
    # AP: q1 1 everywhere; q2 0; q3 1 for thresholds 0.5, 0.55, 0.6 (IoU 0.6 >= 0.6), else 0
    #   mAP@0.5 = 2/3, mAP@0.75 = 1/3, average = (3 * 2/3 + 7 * 1/3) / 10 = 13/30
    gt = [_gt("a", [[0, 10]]), _gt("b", [[40, 50], [0, 10]]), _gt("c", [[10, 20]])]
    sub = [_pred("c", [[10, 16, 0.9], [0, 2, 0.5]]), _pred("a", [[0, 10, 0.8]]), _pred("b", [[5, 15, 0.7]])]
    res = evaluate(sub, gt, dataset_type="mr")
    assert res["brief"] == {
        "MR-R1@0.3": 100.0, "MR-R1@0.5": 66.67, "MR-R1@0.7": 33.33, "MR-mIoU": 64.44,
        "MR-mAP": 43.33, "MR-mAP@0.5": 66.67, "MR-mAP@0.75": 33.33,
    }
    assert res["full"]["MR-mAP"]["0.6"] == 66.67 and res["full"]["MR-mAP"]["0.65"] == 33.33


def test_mr_type_on_real_charades_annotations():
    # predicting every GT window exactly scores 100 on all MR metrics
    gt = load_jsonl(DATA / "charades_sta" / "charades_test_release.jsonl")[:200]
    sub = [_pred(d["qid"], [[*d["relevant_windows"][0], 1.0]]) for d in gt]
    assert set(evaluate(sub, gt, "mr")["brief"].values()) == {100.0}


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_wrong_qid_set():
    gt = [_gt(1, [[0, 10]]), _gt(2, [[0, 10]]), _gt(3, [[0, 10]])]
    sub = [_pred(1, [[0, 10, 1.0]]), _pred(9, [[0, 10, 1.0]])]
    with pytest.raises(AnnotationError, match=r"2 ground-truth qid\(s\) missing .*first: 2, 3.*1 submission qid"):
        evaluate(sub, gt)


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "gt.jsonl"
    good = json.dumps(_gt(1, [[0, 10]]))
    path.write_text(f"{good}\n\n{good}\n{{\"qid\": 2, \"duration\": \n{good}")  # line 4 is broken
    with pytest.raises(AnnotationError, match=r"gt\.jsonl:4: invalid JSON"):
        load_jsonl(path)


def test_missing_field_names_line(tmp_path):
    path = tmp_path / "gt.jsonl"
    rec = _gt(2, [[0, 10]])
    del rec["duration"]
    path.write_text(json.dumps(_gt(1, [[0, 10]])) + "\n" + json.dumps(rec))  # no trailing newline
    with pytest.raises(AnnotationError, match=r"gt\.jsonl:2: missing field 'duration'"):
        load_jsonl(path, kind="gt")


def test_ground_truth_is_read_by_the_annotation_formats_one_validator_under_the_official_rules(tmp_path):
    """Issue 20 point 3: the evaluator reads ground truth with extract.annotations.parse_line (OFFICIAL rules):
    what the official evaluator accepts and training refuses is data here, and what both refuse is refused with
    the same words, naming the file and line."""
    from extract.annotations import load_annotations

    path = tmp_path / "gt.jsonl"
    zero_length = {"qid": 1, "duration": 10.0, "relevant_windows": [[4.0, 4.0]]}  # no query, no vid
    path.write_text(json.dumps(zero_length) + "\n")
    assert load_jsonl(path, kind="gt") == [zero_length]
    sub = [_pred(1, [[4.0, 4.0, 0.9]])]
    assert evaluate(sub, [zero_length], "mr")["brief"]["MR-R1@0.3"] == 0.0  # zero length: IoU 0 (docstring)
    with pytest.raises(AnnotationError, match=r"gt\.jsonl:1: missing field 'query'"):
        load_annotations(path)
    path.write_text(json.dumps({**zero_length, "query": "q", "vid": "v"}) + "\n")
    with pytest.raises(AnnotationError, match=r"gt\.jsonl:1: relevant_windows\[0\].*needs 0 <= start < end"):
        load_annotations(path)

    past = {"qid": 1, "query": "q", "vid": "v", "duration": 5.0, "relevant_windows": [[0, 2]],
            "relevant_clip_ids": [0, 2], "saliency_scores": [[1, 2, 3], [2, 2, 2]]}
    path.write_text(json.dumps(_gt(0, [[0, 2]])) + "\n" + json.dumps(past) + "\n")
    message = r"gt\.jsonl:2: relevant_clip_ids\[1\] = 2 is not a clip of the video: duration 5 s"
    for read in (load_annotations, lambda p: load_jsonl(p, kind="gt")):
        with pytest.raises(AnnotationError, match=message):
            read(path)
    with pytest.raises(AnnotationError, match=r"ground truth record 1 \(qid 1\): relevant_windows\[0\].*start <= end"):
        evaluate(sub, [{**zero_length, "relevant_windows": [[5.0, 4.0]]}])


@pytest.mark.parametrize("window, message", [
    ([10, 5, 0.3], "start > end"),
    ([1, 5], r"is not \[start, end, score\]"),
    ([1, "5", 0.3], r"is not \[start, end, score\]"),
])
def test_malformed_prediction_window(tmp_path, window, message):
    path = tmp_path / "preds.jsonl"
    lines = [_pred(1, [[0, 10, 0.9]], pred_saliency_scores=[0.1]), _pred(2, [[0, 10, 0.9], window])]
    path.write_text("\n".join(json.dumps(x) for x in lines))
    with pytest.raises(AnnotationError, match=rf"preds\.jsonl:2: pred_relevant_windows\[1\].*{message}"):
        load_jsonl(path)
    # the same check guards evaluate() on records that did not come from a file
    with pytest.raises(AnnotationError, match=rf"submission record 2 \(qid 2\).*{message}"):
        evaluate(lines, [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])])


def test_cli_bad_input_exits_with_message(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps(_pred(1, [[0, 10, 0.9]])) + "\nnot json\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sdst.evaluate", "--submission", str(preds), "--gt", str(QVH_VAL),
         "--out", str(tmp_path / "m.json")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert ".jsonl:2: invalid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------------------------------------
# CLI on the golden file
# ---------------------------------------------------------------------------------------------


def test_cli_golden(tmp_path, golden):
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [sys.executable, "-m", "sdst.evaluate", "--submission", str(GOLDEN_PREDS), "--gt", str(QVH_VAL),
         "--out", str(out), "--dataset-type", "qvh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    assert set(written) == {"brief", "full"}
    for key, expected in golden["brief"].items():
        assert written["brief"][key] == pytest.approx(expected, abs=0.01), key
    assert json.loads(proc.stdout) == written["brief"]  # the printed block is the brief
