"""Evaluator for video temporal grounding: moment retrieval (MR) and highlight detection (HD).

Reproduces the metric semantics of the official QVHighlights standalone evaluator
(jayleicn/moment_detr, ``standalone_eval/``; see ``docs/evaluation.md``) with numpy arrays batched over
queries, so QVHighlights val (1,550 queries) takes a fraction of a second on one core.

Dataset types (registry :data:`DATASET_TYPES`, chosen by ``dataset_type``):

- ``"qvh"``: QVHighlights. MR mAP over IoU 0.5:0.05:0.95 and R1 for the full set and for GT window
  lengths short (0, 10], middle (10, 30], long (30, 150] s; HD mAP and HIT@1 at the Fair/Good/VeryGood
  saliency levels (when the submission carries ``pred_saliency_scores``).
- ``"mr"``: Charades-STA / TACoS. R1@{0.3, 0.5, 0.7}, mIoU of the first listed window, and the same MR mAP.

Formats (JSON lines):

- ground truth: ``qid`` (int or str), ``duration`` (s), ``relevant_windows`` ([[start, end], ...] s);
  QVHighlights adds ``relevant_clip_ids`` (2-s clip indices) and ``saliency_scores`` (one
  [a, b, c] triple of 0-4 annotator scores per relevant clip).
- submission: ``qid``, ``pred_relevant_windows`` ([[start, end, score], ...]) and optionally
  ``pred_saliency_scores`` (one float per 2-s clip).

Result: ``{"brief": {...}, "full": {...}}``, percentages with 2 decimals. ``full`` holds the detail
blocks in the official evaluator's layout: for ``qvh`` the keys ``HL-min-{Fair,Good,VeryGood}``
(``{"HL-mAP", "HL-Hit1"}``) and ``full``/``long``/``middle``/``short`` (``{"MR-mAP": {thr: ..,
"average": ..}, "MR-R1": {thr: ..}}``); a length range without any GT window gives ``None`` values.

CLI: ``python -m sdst.evaluate --submission P --gt G --out M [--dataset-type qvh|mr]``.

Official subtleties kept: the short/middle/long ranges drop the GT *windows* outside the range (a query
stays when at least one window is left; its predictions are untouched, so a prediction of an
out-of-range window is a false positive), while "full" filters nothing; R1 picks the GT window of highest
IoU with the first listed window (first on ties); HD AP is the plain mean of the interpolated precision at each
distinct score threshold that adds recall (not recall-weighted), is 0 when an annotator marks no clip
positive and 1 when all are; HIT@1 takes the argmax over the untruncated prediction, so a maximum past
the GT's int(duration / 2) clips is a miss.
Windows are read as the official code reads them, whatever their order: the first 10 listed
(``compute_mr_ap``), sorted by score (stable, ties in listed order) for AP; R1 and mIoU take the first
listed window, whatever its score (``compute_mr_r1``). A submission need not be sorted, and is not sorted
here. Deliberate differences: a query with no predicted window scores 0 (the official code crashes in R1
and leaves it out of mAP); a zero-length window has IoU 0 with an identical one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from extract.annotations import OFFICIAL, AnnotationError, is_real, parse_line, read_jsonl
from sdst.metrics import (MAP_IOU_THRESHOLDS, MR_R1_THRESHOLDS, QVH_LENGTH_RANGES, gt_windows, highlight_metrics,
                          listed_windows, mr_block, pct)


def _window_problem(windows, field: str, deep: bool) -> str | None:
    """Describe the first malformed window in ``windows`` ([start, end, score], finite, start <= end).

    ``deep=False`` only checks that ``windows`` is a list (the elements are checked in bulk elsewhere).
    """
    if not isinstance(windows, (list, tuple)):
        return f"'{field}' must be a list of windows, got {type(windows).__name__}"
    if not deep:
        return None
    for j, w in enumerate(windows):
        if not isinstance(w, (list, tuple)) or len(w) != 3 or not all(is_real(x) for x in w):
            return f"{field}[{j}] = {w!r} is not [start, end, score] (3 numbers)"
        if not all(math.isfinite(x) for x in w):
            return f"{field}[{j}] = {w!r} has a non-finite number"
        if w[0] > w[1]:
            return f"{field}[{j}] = {w!r} has start > end"
    return None


def _qid_problem(rec: dict) -> str | None:
    if "qid" not in rec:
        return "missing field 'qid'"
    qid = rec["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        return f"'qid' must be an int or a str, got {qid!r}"
    return None


def _gt_problem(rec, deep: bool = True) -> str | None:
    """First problem of one ground-truth record, or None: the annotation format's one validator, under the
    official evaluator's rules (extract.annotations.OFFICIAL); ``deep`` is accepted for the common signature."""
    try:
        parse_line(rec, "", require_labels=True, rules=OFFICIAL)
    except AnnotationError as err:
        return str(err).removeprefix(": ")
    return None


def _submission_problem(rec, deep: bool = True) -> str | None:
    """First problem of one submission record, or None (``deep=False``: skip per-element checks)."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    problem = _qid_problem(rec)
    if problem:
        return problem
    if "pred_relevant_windows" not in rec:
        return "missing field 'pred_relevant_windows'"
    problem = _window_problem(rec["pred_relevant_windows"], "pred_relevant_windows", deep)
    if problem:
        return problem
    if "pred_saliency_scores" in rec:
        sal = rec["pred_saliency_scores"]
        if not isinstance(sal, (list, tuple)):
            return f"'pred_saliency_scores' must be a list of numbers, got {type(sal).__name__}"
        if deep:
            for j, x in enumerate(sal):
                if not is_real(x) or not math.isfinite(x):
                    return f"pred_saliency_scores[{j}] = {x!r} is not a finite number"
    return None


def _numeric(values: list, width: int | None) -> np.ndarray | None:
    """``values`` as a finite int/float array of shape (N,) or (N, width), or None if it is not one."""
    try:
        arr = np.array(values)
    except (ValueError, TypeError):
        return None
    if len(values) == 0:
        return np.zeros((0,) if width is None else (0, width))
    shape_ok = arr.ndim == 1 if width is None else (arr.ndim == 2 and arr.shape[1] == width)
    if not shape_ok or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        return None
    return arr


def _windows_ok(records: Sequence[dict], field: str, width: int) -> bool:
    arr = _numeric([w for d in records for w in d[field]], width)
    return arr is not None and bool((arr[:, 0] <= arr[:, 1]).all())


def _submission_bulk_ok(records: Sequence[dict]) -> bool:
    if not _windows_ok(records, "pred_relevant_windows", 3):
        return False
    sal = _numeric([x for d in records if "pred_saliency_scores" in d for x in d["pred_saliency_scores"]], None)
    return sal is not None


# kind -> (per-record problem finder, bulk check of the numbers of all records)
_VALIDATORS: dict[str, tuple[Callable[..., str | None], Callable[[Sequence[dict]], bool] | None]] = {
    "gt": (_gt_problem, None),  # the annotation reader, record by record (tens of µs each)
    "submission": (_submission_problem, _submission_bulk_ok),
}


def _first_problem(records: Sequence, kind: str) -> tuple[int, str] | None:
    """(index, description) of the first malformed record, or None.

    Ground truth is read record by record by the annotation format's validator. For submissions, structure is
    checked per record and the numbers of all records at once with numpy; only when that fails are records
    walked element by element to name the culprit.
    """
    finder, bulk_ok = _VALIDATORS[kind]
    for i, rec in enumerate(records):
        problem = finder(rec, deep=bulk_ok is None)
        if problem:
            return i, problem
    if bulk_ok is None or bulk_ok(records):
        return None
    for i, rec in enumerate(records):
        problem = finder(rec, deep=True)
        if problem:
            return i, problem
    return None  # numbers the bulk check is stricter about (e.g. huge ints) but that are valid


def load_jsonl(path: str | Path, kind: str | None = "auto") -> list[dict]:
    """Read a JSON-lines file of ground truth or submission records, validating every line.

    ``kind``: ``"gt"``, ``"submission"``, or ``"auto"`` (a file whose first record has a ``pred_*`` field
    is a submission, else ground truth); ``None`` skips validation (JSON objects only).
    Empty lines are skipped. Raises :class:`AnnotationError` naming the file, the 1-based line number and
    what is wrong (bad JSON, missing field, malformed window), ``FileNotFoundError`` for a missing file.
    """
    if kind not in (None, "auto") and kind not in _VALIDATORS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_VALIDATORS)}, 'auto' or None")
    path = Path(path)
    rows = read_jsonl(path)
    for lineno, rec in rows:
        if not isinstance(rec, dict):
            raise AnnotationError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
    records = [rec for _, rec in rows]
    linenos = [lineno for lineno, _ in rows]
    if kind == "auto":
        kind = "submission" if records and any(k.startswith("pred_") for k in records[0]) else "gt"
    if kind is not None:
        found = _first_problem(records, kind)
        if found:
            raise AnnotationError(f"{path}:{linenos[found[0]]}: {found[1]}")
    return records


def _check_records(records: Sequence[dict], name: str, kind: str) -> dict:
    """Validate records; returns {qid: index}. Raises AnnotationError naming the record."""
    if not isinstance(records, (list, tuple)):
        raise AnnotationError(f"{name} must be a list of records, got {type(records).__name__}")
    if len(records) == 0:
        raise AnnotationError(f"{name} is empty")
    found = _first_problem(records, kind)
    if found:
        i, problem = found
        rec = records[i]
        qid = f" (qid {rec['qid']!r})" if isinstance(rec, dict) and "qid" in rec else ""
        raise AnnotationError(f"{name} record {i + 1}{qid}: {problem}")
    index: dict = {}
    for i, rec in enumerate(records):
        qid = rec["qid"]
        if qid in index:
            raise AnnotationError(f"{name}: duplicate qid {qid!r} (records {index[qid] + 1} and {i + 1})")
        index[qid] = i
    return index


def _check_qid_sets(sub_index: dict, gt_index: dict) -> None:
    missing = [q for q in gt_index if q not in sub_index]
    extra = [q for q in sub_index if q not in gt_index]
    if missing or extra:
        def few(qids):
            shown = ", ".join(repr(q) for q in qids[:5])
            return shown + (", ..." if len(qids) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} ground-truth qid(s) missing from the submission (first: {few(missing)})")
        if extra:
            parts.append(f"{len(extra)} submission qid(s) not in the ground truth (first: {few(extra)})")
        raise AnnotationError("qids of submission and ground truth differ: " + "; ".join(parts))


# ----------------------------------------------------------------------------------------------
# Dataset types
# ----------------------------------------------------------------------------------------------


def _evaluate_qvh(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    pred, pred_valid = listed_windows(submission)
    gt, gt_valid = gt_windows(ground_truth)
    gt_len = gt[..., 1] - gt[..., 0]
    detail: dict = {}
    for name, bounds in QVH_LENGTH_RANGES.items():
        if bounds is None:
            g_mask = gt_valid
        else:  # keep only the GT windows in range; queries left without any are dropped
            g_mask = gt_valid & (gt_len > bounds[0]) & (gt_len <= bounds[1])
        q_mask = g_mask.any(1)
        if not q_mask.any():
            detail[name] = {"MR-mAP": {**{str(t): None for t in MAP_IOU_THRESHOLDS}, "average": None},
                            "MR-R1": {str(t): None for t in MAP_IOU_THRESHOLDS}}
            continue
        # compact the kept GT windows to the front so every row is a prefix (order preserved)
        g_order = np.argsort(~g_mask[q_mask], axis=1, kind="stable")
        g_sub = np.take_along_axis(gt[q_mask], g_order[:, :, None], axis=1)
        v_sub = np.take_along_axis(g_mask[q_mask], g_order, axis=1)
        m_ap, r1, _ = mr_block(pred[q_mask], pred_valid[q_mask], g_sub, v_sub, MAP_IOU_THRESHOLDS)
        detail[name] = {"MR-mAP": m_ap, "MR-R1": r1}
    brief = {
        "MR-full-R1@0.5": detail["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": detail["full"]["MR-R1"]["0.7"],
        "MR-full-mAP": detail["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": detail["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": detail["full"]["MR-mAP"]["0.75"],
        "MR-long-mAP": detail["long"]["MR-mAP"]["average"],
        "MR-middle-mAP": detail["middle"]["MR-mAP"]["average"],
        "MR-short-mAP": detail["short"]["MR-mAP"]["average"],
    }
    has_sal = [("pred_saliency_scores" in d) for d in submission]
    if any(has_sal):
        if not all(has_sal):
            i = has_sal.index(False)
            raise AnnotationError(f"submission qid {submission[i]['qid']!r}: missing field 'pred_saliency_scores' "
                                  "(other records have it)")
        hl = highlight_metrics(submission, ground_truth)
        for name, block in hl.items():
            brief[f"{name}-mAP"] = block["HL-mAP"]
            brief[f"{name}-Hit1"] = block["HL-Hit1"]
        detail.update(hl)
    return {"brief": brief, "full": dict(sorted(detail.items()))}  # the official key order


def _evaluate_mr(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    pred, pred_valid = listed_windows(submission)
    gt, gt_valid = gt_windows(ground_truth)
    m_ap, r1, ious = mr_block(pred, pred_valid, gt, gt_valid, MR_R1_THRESHOLDS)
    miou = pct(ious.mean())
    brief = {f"MR-R1@{t}": v for t, v in r1.items()}
    brief.update({"MR-mIoU": miou, "MR-mAP": m_ap["average"], "MR-mAP@0.5": m_ap["0.5"],
                  "MR-mAP@0.75": m_ap["0.75"]})
    return {"brief": brief, "full": {"MR-mAP": m_ap, "MR-R1": r1, "MR-mIoU": miou}}


DATASET_TYPES: dict[str, Callable[[Sequence[dict], Sequence[dict]], dict]] = {
    "qvh": _evaluate_qvh,  # QVHighlights: MR by length range + HD
    "mr": _evaluate_mr,  # Charades-STA, TACoS: R1@{0.3,0.5,0.7}, mIoU, mAP
}


def evaluate(submission: list[dict], ground_truth: list[dict], dataset_type: str = "qvh") -> dict:
    """Score a submission against ground truth -> ``{"brief": {...}, "full": {...}}`` (percent, 2 dp).

    Both are lists of records in the formats of the module docstring; the qid sets must be equal.
    Raises :class:`AnnotationError` on malformed records or mismatched qids, ``ValueError`` on an
    unknown ``dataset_type``.
    """
    if dataset_type not in DATASET_TYPES:
        raise ValueError(f"unknown dataset_type {dataset_type!r}; expected one of {sorted(DATASET_TYPES)}")
    sub_index = _check_records(submission, "submission", "submission")
    gt_index = _check_records(ground_truth, "ground truth", "gt")
    _check_qid_sets(sub_index, gt_index)
    aligned = [submission[sub_index[d["qid"]]] for d in ground_truth]  # submission in GT order
    return DATASET_TYPES[dataset_type](aligned, list(ground_truth))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdst.evaluate",
                                     description="Score moment retrieval / highlight detection predictions.")
    parser.add_argument("--submission", required=True, help="predictions, JSON lines")
    parser.add_argument("--gt", required=True, help="ground truth, JSON lines")
    parser.add_argument("--out", required=True, help="where to write the metrics JSON")
    parser.add_argument("--dataset-type", default="qvh", choices=sorted(DATASET_TYPES),
                        help="qvh: QVHighlights (MR + HD); mr: Charades-STA / TACoS")
    args = parser.parse_args(argv)
    try:
        submission = load_jsonl(args.submission, kind="submission")
        ground_truth = load_jsonl(args.gt, kind="gt")
        metrics = evaluate(submission, ground_truth, args.dataset_type)
        Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(metrics["brief"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
