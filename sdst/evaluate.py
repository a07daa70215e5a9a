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

from extract.annotations import QVH_CLIP, AnnotationError, read_jsonl

# IoU thresholds 0.5:0.05:0.95 written as the decimals the official evaluator compares against
# (it rounds np.linspace(0.5, 0.95, 10) to 2 decimals); keys of the output are str(threshold).
MAP_IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
MR_R1_THRESHOLDS = (0.3, 0.5, 0.7)  # Charades-STA / TACoS convention
MAX_PRED_WINDOWS = 10  # only the first 10 listed windows are read (official compute_mr_ap)
# GT window length ranges (min, max] in seconds; None = no filtering (the official (0, 150] "full").
QVH_LENGTH_RANGES = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0), "full": None}
SALIENCY_LEVELS = {"Fair": 2, "Good": 3, "VeryGood": 4}  # minimum annotator score of a positive clip
NUM_ANNOTATORS = 3
CLIP_LENGTH = QVH_CLIP  # seconds per saliency clip (QVHighlights)


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _window_problem(windows, field: str, width: int, deep: bool) -> str | None:
    """Describe the first malformed window in ``windows`` (each ``width`` finite numbers, start <= end).

    ``deep=False`` only checks that ``windows`` is a list (the elements are checked in bulk elsewhere).
    """
    if not isinstance(windows, (list, tuple)):
        return f"'{field}' must be a list of windows, got {type(windows).__name__}"
    if not deep:
        return None
    shape = "[start, end]" if width == 2 else "[start, end, score]"
    for j, w in enumerate(windows):
        if not isinstance(w, (list, tuple)) or len(w) != width or not all(_is_number(x) for x in w):
            return f"{field}[{j}] = {w!r} is not {shape} ({width} numbers)"
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
    """First problem of one ground-truth record, or None (``deep=False``: skip per-element checks)."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    problem = _qid_problem(rec)
    if problem:
        return problem
    for field in ("duration", "relevant_windows"):
        if field not in rec:
            return f"missing field '{field}'"
    duration = rec["duration"]
    if not _is_number(duration) or not math.isfinite(duration) or duration < 0:
        return f"'duration' must be a non-negative number, got {duration!r}"
    problem = _window_problem(rec["relevant_windows"], "relevant_windows", 2, deep)
    if problem:
        return problem
    if len(rec["relevant_windows"]) == 0:
        return "'relevant_windows' is empty (at least one GT window is needed)"
    has_ids, has_scores = "relevant_clip_ids" in rec, "saliency_scores" in rec
    if has_ids != has_scores:
        missing = "saliency_scores" if has_ids else "relevant_clip_ids"
        return f"missing field '{missing}' (relevant_clip_ids and saliency_scores go together)"
    if has_ids:
        ids, scores = rec["relevant_clip_ids"], rec["saliency_scores"]
        if not isinstance(ids, list) or not isinstance(scores, list):
            return "'relevant_clip_ids' and 'saliency_scores' must be lists"
        if len(ids) != len(scores):
            return f"{len(ids)} relevant_clip_ids but {len(scores)} saliency_scores"
        if not deep:
            return None
        num_clips = int(duration / CLIP_LENGTH)
        for j, (i, sc) in enumerate(zip(ids, scores)):
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < num_clips:
                return (f"relevant_clip_ids[{j}] = {i!r} is not a clip index in [0, {num_clips}) "
                        f"(int(duration / {CLIP_LENGTH}) clips)")
            if (not isinstance(sc, (list, tuple)) or len(sc) != NUM_ANNOTATORS
                    or not all(_is_number(x) and math.isfinite(x) for x in sc)):
                return f"saliency_scores[{j}] = {sc!r} is not {NUM_ANNOTATORS} annotator scores"
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
    problem = _window_problem(rec["pred_relevant_windows"], "pred_relevant_windows", 3, deep)
    if problem:
        return problem
    if "pred_saliency_scores" in rec:
        sal = rec["pred_saliency_scores"]
        if not isinstance(sal, (list, tuple)):
            return f"'pred_saliency_scores' must be a list of numbers, got {type(sal).__name__}"
        if deep:
            for j, x in enumerate(sal):
                if not _is_number(x) or not math.isfinite(x):
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


def _gt_bulk_ok(records: Sequence[dict]) -> bool:
    if not _windows_ok(records, "relevant_windows", 2):
        return False
    sal = [d for d in records if "relevant_clip_ids" in d]
    if not sal:
        return True
    ids = _numeric([i for d in sal for i in d["relevant_clip_ids"]], None)
    scores = _numeric([x for d in sal for x in d["saliency_scores"]], NUM_ANNOTATORS)
    if ids is None or scores is None or (len(ids) and ids.dtype.kind not in "iu"):
        return False
    num_clips = np.repeat([int(d["duration"] / CLIP_LENGTH) for d in sal], [len(d["relevant_clip_ids"]) for d in sal])
    return bool(((ids >= 0) & (ids < num_clips)).all())


def _submission_bulk_ok(records: Sequence[dict]) -> bool:
    if not _windows_ok(records, "pred_relevant_windows", 3):
        return False
    sal = _numeric([x for d in records if "pred_saliency_scores" in d for x in d["pred_saliency_scores"]], None)
    return sal is not None


# kind -> (per-record problem finder, bulk check of the numbers of all records)
_VALIDATORS: dict[str, tuple[Callable[..., str | None], Callable[[Sequence[dict]], bool]]] = {
    "gt": (_gt_problem, _gt_bulk_ok),
    "submission": (_submission_problem, _submission_bulk_ok),
}


def _first_problem(records: Sequence, kind: str) -> tuple[int, str] | None:
    """(index, description) of the first malformed record, or None.

    Structure is checked per record; the numbers of all records are checked at once with numpy, and
    only when that fails are records walked element by element to name the culprit.
    """
    finder, bulk_ok = _VALIDATORS[kind]
    for i, rec in enumerate(records):
        problem = finder(rec, deep=False)
        if problem:
            return i, problem
    if bulk_ok(records):
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
# Array building
# ----------------------------------------------------------------------------------------------


def _listed_windows(submission: Sequence[dict], k: int = MAX_PRED_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """The first k predicted windows per query, in the order the submission lists them.

    This is what the official evaluator reads (``compute_mr_ap``: ``pred_relevant_windows[:10]``), whatever
    the scores: a window listed 11th is never read, even when it scores highest. Returns ``windows``
    (Q, k, 3) [start, end, score] and ``valid`` (Q, k) bool (a prefix of each row).
    """
    windows = np.zeros((len(submission), k, 3))
    valid = np.zeros((len(submission), k), dtype=bool)
    for q, d in enumerate(submission):
        listed = d["pred_relevant_windows"][:k]
        if listed:
            windows[q, : len(listed)] = np.asarray(listed, dtype=float)[:, :3]
            valid[q, : len(listed)] = True
    return windows, valid


def _by_score(windows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by descending score, ties in listed order, invalid slots last -> ((Q, k, 2), (Q, k)).

    The official AP sorts a query's (at most 10) windows with Python's stable ``list.sort`` on ``-score``.
    """
    key = np.where(valid, -windows[..., 2], np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    return (np.take_along_axis(windows[..., :2], order[:, :, None], axis=1),
            np.take_along_axis(valid, order, axis=1))


def _gt_windows(ground_truth: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """GT windows padded per query: ``windows`` (Q, G, 2) and ``valid`` (Q, G) bool."""
    counts = np.fromiter((len(d["relevant_windows"]) for d in ground_truth), dtype=np.int64,
                         count=len(ground_truth))
    g = int(counts.max())
    windows = np.zeros((len(ground_truth), g, 2))
    valid = np.arange(g)[None, :] < counts[:, None]
    windows[valid] = np.array([w for d in ground_truth for w in d["relevant_windows"]], dtype=float)
    return windows, valid


# ----------------------------------------------------------------------------------------------
# Moment retrieval
# ----------------------------------------------------------------------------------------------


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every window of ``a`` (..., N, 2) with every window of ``b`` (..., M, 2) -> (..., N, M).

    Union = len(a) + len(b) - intersection (the official mAP formula); 0 where the union is 0.
    """
    len_a = a[..., 1] - a[..., 0]
    len_b = b[..., 1] - b[..., 0]
    left = np.maximum(a[..., :, None, 0], b[..., None, :, 0])
    right = np.minimum(a[..., :, None, 1], b[..., None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = len_a[..., :, None] + len_b[..., None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]``, (N, 2) x (N, 2) -> (N,).

    Union is the hull max(end) - min(start), as the official R1 computes it (equal to the true union
    whenever the windows overlap; the IoU is 0 otherwise); 0 where the hull is empty.
    """
    inter = np.maximum(0.0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def mr_average_precision(pred: np.ndarray, pred_valid: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray,
                         thresholds: Sequence[float] = MAP_IOU_THRESHOLDS) -> np.ndarray:
    """Detection AP per query and IoU threshold -> (Q, T).

    pred (Q, K, 2) in descending score order with ``pred_valid`` (Q, K) a prefix mask; gt (Q, G, 2) with
    ``gt_valid`` (Q, G). For each threshold separately, predictions are matched in score order to the
    not-yet-taken GT window of highest IoU (ties: the later GT window) if that IoU >= threshold; every GT
    window is a positive. AP is VOC-style interpolated: sum over true positives at rank k of
    max(precision at ranks >= k), divided by the number of GT windows.
    """
    n_q, n_k, n_g = pred.shape[0], pred.shape[1], gt.shape[1]
    thr = np.asarray(thresholds, dtype=float)
    iou = temporal_iou(pred, gt)  # (Q, K, G)
    iou = np.where(pred_valid[:, :, None] & gt_valid[:, None, :], iou, -1.0)
    taken = np.zeros((n_q, len(thr), n_g), dtype=bool)
    tp = np.zeros((n_q, len(thr), n_k), dtype=bool)
    for k in range(n_k):
        cand = np.where(taken, -1.0, iou[:, None, k, :])  # (Q, T, G)
        ok = cand >= thr[None, :, None]
        cand = np.where(ok, cand, -1.0)
        best = n_g - 1 - cand[..., ::-1].argmax(-1)  # highest IoU, the last GT index among ties
        hit = ok.any(-1)
        tp[:, :, k] = hit
        qi, ti = np.nonzero(hit)
        taken[qi, ti, best[qi, ti]] = True
    precision = np.cumsum(tp, axis=-1) / np.arange(1, n_k + 1)
    precision = np.where(pred_valid[:, None, :], precision, 0.0)
    interp = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
    return (interp * tp).sum(-1) / gt_valid.sum(1)[:, None]


def top1_iou(pred: np.ndarray, pred_valid: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray) -> np.ndarray:
    """IoU of each query's first listed window with the GT window it overlaps most (first on ties) -> (Q,).

    The official R1 (``compute_mr_r1``) takes ``pred_relevant_windows[0]`` whatever its score, so ``pred``
    (Q, K, >=2) is in listed order here; a query without predictions scores 0.
    """
    top = pred[:, 0, :2]  # (Q, 2)
    cross = np.where(gt_valid, temporal_iou(top[:, None], gt)[:, 0], -1.0)  # (Q, G)
    chosen = gt[np.arange(len(gt)), cross.argmax(1)]
    return np.where(pred_valid[:, 0], paired_iou(top, chosen), 0.0)


def _pct(x: float) -> float:
    """Fraction -> percent with 2 decimals (the official formatting)."""
    return float(f"{100 * x:.2f}")


def _mr_block(listed, listed_valid, gt, gt_valid, r1_thresholds) -> tuple[dict, dict, np.ndarray]:
    """({"MR-mAP": {thr: %, "average": %}}, {"MR-R1": {thr: %}}, top-1 IoUs) for the given queries.

    ``listed`` (Q, K, 3) are the windows read, in submission order (:func:`_listed_windows`).
    """
    ap = mr_average_precision(*_by_score(listed, listed_valid), gt, gt_valid).mean(0)  # (T,)
    m_ap = {str(t): _pct(v) for t, v in zip(MAP_IOU_THRESHOLDS, ap)}
    m_ap["average"] = _pct(ap.mean())
    ious = top1_iou(listed, listed_valid, gt, gt_valid)
    r1 = {str(t): _pct(np.mean(ious >= t)) for t in r1_thresholds}
    return m_ap, r1, ious


# ----------------------------------------------------------------------------------------------
# Highlight detection
# ----------------------------------------------------------------------------------------------


def hd_average_precision(scores: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Ranking AP of clip scores per query and label column -> (Q, C).

    scores (Q, L) predicted clip scores, labels (Q, L, C) binary, valid (Q, L) a prefix mask (the GT's
    clips). The official definition (video2gif ``get_ap`` on sklearn's precision-recall curve): clips with
    equal scores form one threshold; for every threshold whose clips include a positive, take the
    precision interpolated as the max precision over that and all lower thresholds; AP is the plain mean
    of these values. Labels all 0 -> AP 0; all 1 -> AP 1.
    """
    n_q, n_l = scores.shape
    if n_l == 0:
        return np.zeros((n_q, labels.shape[2]))
    keyed = np.where(valid, scores, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")
    s = np.take_along_axis(keyed, order, axis=1)  # descending; invalid clips (-inf) last
    lab = np.take_along_axis(labels * valid[:, :, None], order[:, :, None], axis=1)  # (Q, L, C)
    n = valid.sum(1)  # (Q,)
    pos = np.arange(n_l)[None, :]
    # last clip of each group of equal scores (one threshold of the PR curve)
    changes = np.ones((n_q, n_l), dtype=bool)
    changes[:, :-1] = s[:, 1:] != s[:, :-1]
    group_end = (pos < n[:, None]) & (changes | (pos == n[:, None] - 1))
    tp = np.cumsum(lab, axis=1)  # (Q, L, C)
    precision = np.where(group_end[:, :, None], tp / (pos[:, :, None] + 1.0), 0.0)
    interp = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # a threshold counts when its group adds recall: tp there exceeds tp at the previous group end
    tp_at_end = np.where(group_end[:, :, None], tp, 0)
    prev = np.concatenate([np.zeros_like(tp_at_end[:, :1]), np.maximum.accumulate(tp_at_end, axis=1)[:, :-1]],
                          axis=1)
    counted = group_end[:, :, None] & (tp > prev)
    n_counted = counted.sum(1)
    ap = np.divide((interp * counted).sum(1), n_counted, out=np.zeros(n_counted.shape), where=n_counted > 0)
    n_pos = lab.sum(1)  # (Q, C)
    ap = np.where(n_pos == 0, 0.0, ap)
    return np.where((n_pos == n[:, None]) & (n[:, None] > 0), 1.0, ap)


def _saliency_arrays(submission: Sequence[dict], ground_truth: Sequence[dict]):
    """Predicted and GT clip scores.

    Returns ``pred`` (Q, P) with ``pred_len`` (Q,), the raw predictions; ``gt_scores`` (Q, L, 3) annotator
    scores over int(duration / 2) clips (0 outside the relevant clips) with ``gt_len`` (Q,).
    """
    n_q = len(ground_truth)
    pred_len = np.fromiter((len(d["pred_saliency_scores"]) for d in submission), dtype=np.int64, count=n_q)
    pred = np.zeros((n_q, int(pred_len.max(initial=0))))
    pred[np.arange(pred.shape[1])[None, :] < pred_len[:, None]] = np.fromiter(
        (x for d in submission for x in d["pred_saliency_scores"]), dtype=float, count=int(pred_len.sum()))
    gt_len = np.fromiter((int(d["duration"] / CLIP_LENGTH) for d in ground_truth), dtype=np.int64, count=n_q)
    gt_scores = np.zeros((n_q, int(gt_len.max(initial=0)), NUM_ANNOTATORS))
    n_rel = np.fromiter((len(d["relevant_clip_ids"]) for d in ground_truth), dtype=np.int64, count=n_q)
    if n_rel.sum():
        rows = np.repeat(np.arange(n_q), n_rel)
        cols = np.fromiter((i for d in ground_truth for i in d["relevant_clip_ids"]), dtype=np.int64,
                           count=int(n_rel.sum()))
        gt_scores[rows, cols] = np.array([s for d in ground_truth for s in d["saliency_scores"]], dtype=float)
    return pred, pred_len, gt_scores, gt_len


def _highlight_metrics(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    """{"HL-min-<level>": {"HL-mAP": %, "HL-Hit1": %}} for the Fair/Good/VeryGood levels."""
    for i, d in enumerate(ground_truth):
        if "relevant_clip_ids" not in d:
            raise AnnotationError(f"ground truth record {i + 1} (qid {d['qid']!r}): missing field "
                                  "'relevant_clip_ids' (needed for the highlight metrics)")
    pred, pred_len, gt_scores, gt_len = _saliency_arrays(submission, ground_truth)
    n_q, n_l = gt_scores.shape[:2]
    # HIT@1: argmax over the whole prediction (first index on ties); a clip past the GT length misses.
    masked = np.where(np.arange(pred.shape[1])[None, :] < pred_len[:, None], pred, -np.inf)
    top = masked.argmax(1) if pred.shape[1] else np.zeros(n_q, dtype=np.int64)
    top_ok = (pred_len > 0) & (top < gt_len)
    top_scores = gt_scores[np.arange(n_q), np.minimum(top, max(n_l - 1, 0))] if n_l else np.zeros((n_q, 3))
    # HD AP: predictions truncated / zero-padded to the GT's clips.
    scores = np.zeros((n_q, n_l))
    width = min(n_l, pred.shape[1])
    scores[:, :width] = pred[:, :width]
    valid = np.arange(n_l)[None, :] < gt_len[:, None]
    levels = np.array(list(SALIENCY_LEVELS.values()))
    labels = (gt_scores[:, :, None, :] >= levels[None, None, :, None]).reshape(n_q, n_l, -1)  # (Q, L, 3*3)
    ap = hd_average_precision(scores, labels.astype(float), valid).reshape(n_q, len(levels), NUM_ANNOTATORS)
    out = {}
    for j, (name, level) in enumerate(SALIENCY_LEVELS.items()):
        hit = top_ok & (top_scores >= level).any(1)
        out[f"HL-min-{name}"] = {"HL-mAP": _pct(ap[:, j].mean()), "HL-Hit1": _pct(hit.mean())}
    return out


# ----------------------------------------------------------------------------------------------
# Dataset types
# ----------------------------------------------------------------------------------------------


def _evaluate_qvh(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    pred, pred_valid = _listed_windows(submission)
    gt, gt_valid = _gt_windows(ground_truth)
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
        m_ap, r1, _ = _mr_block(pred[q_mask], pred_valid[q_mask], g_sub, v_sub, MAP_IOU_THRESHOLDS)
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
        hl = _highlight_metrics(submission, ground_truth)
        for name, block in hl.items():
            brief[f"{name}-mAP"] = block["HL-mAP"]
            brief[f"{name}-Hit1"] = block["HL-Hit1"]
        detail.update(hl)
    return {"brief": brief, "full": dict(sorted(detail.items()))}  # the official key order


def _evaluate_mr(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    pred, pred_valid = _listed_windows(submission)
    gt, gt_valid = _gt_windows(ground_truth)
    m_ap, r1, ious = _mr_block(pred, pred_valid, gt, gt_valid, MR_R1_THRESHOLDS)
    miou = _pct(ious.mean())
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
