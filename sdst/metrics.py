"""The metrics of the official QVHighlights evaluator, on numpy arrays batched over queries.

Moment retrieval (detection AP over IoU thresholds, R1 of the first listed window, by GT window length) and
highlight detection (ranking AP and HIT@1 per saliency level), as jayleicn/moment_detr ``standalone_eval/``
computes them; the semantics it keeps and the formats are in sdst/evaluate.py, which validates the records and
calls these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from extract.annotations import NUM_ANNOTATORS, QVH_CLIP, AnnotationError

# IoU thresholds 0.5:0.05:0.95 written as the decimals the official evaluator compares against
# (it rounds np.linspace(0.5, 0.95, 10) to 2 decimals); keys of the output are str(threshold).
MAP_IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
MR_R1_THRESHOLDS = (0.3, 0.5, 0.7)  # Charades-STA / TACoS convention
MAX_PRED_WINDOWS = 10  # only the first 10 listed windows are read (official compute_mr_ap)
# GT window length ranges (min, max] in seconds; None = no filtering (the official (0, 150] "full").
QVH_LENGTH_RANGES = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0), "full": None}
SALIENCY_LEVELS = {"Fair": 2, "Good": 3, "VeryGood": 4}  # minimum annotator score of a positive clip



def listed_windows(submission: Sequence[dict], k: int = MAX_PRED_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
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


def by_score(windows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by descending score, ties in listed order, invalid slots last -> ((Q, k, 2), (Q, k)).

    The official AP sorts a query's (at most 10) windows with Python's stable ``list.sort`` on ``-score``.
    """
    key = np.where(valid, -windows[..., 2], np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    return (np.take_along_axis(windows[..., :2], order[:, :, None], axis=1),
            np.take_along_axis(valid, order, axis=1))


def gt_windows(ground_truth: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
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


def submitted_windows(record: dict) -> np.ndarray:
    """A submission record's windows in its listed order, (N, 2) [start, end] (N = 0 for none)."""
    return np.asarray([w[:2] for w in record["pred_relevant_windows"]], dtype=float).reshape(-1, 2)


def best_window_recall(records: list[dict], gt: list[dict], threshold: float = 0.7) -> float:
    """Percent of queries (2 dp) where some submitted window has IoU ≥ ``threshold`` with some GT window: R1 at the
    threshold if the ranking put that window first, so an upper bound of R1 for these windows."""
    windows = {r["qid"]: submitted_windows(r) for r in records}
    none = np.zeros((0, 2))  # a query without predictions finds nothing
    hits = [bool((temporal_iou(windows.get(g["qid"], none), np.asarray(g["relevant_windows"], dtype=float))
                  >= threshold).any()) for g in gt]
    return round(100.0 * sum(hits) / len(hits), 2)


def windows_found(records: list[dict], gt: list[dict], threshold: float = 0.7) -> dict[str, float | None]:
    """Percent of the ground-truth windows (2 dp) of each length range (QVH_LENGTH_RANGES but "full", a window's
    length in (min, max] s) that some submitted window of their query reaches with IoU ≥ ``threshold``; None for a
    range without windows. Per window, not per query: a query's second window counts on its own."""
    windows = {r["qid"]: submitted_windows(r) for r in records}
    none = np.zeros((0, 2))
    found: dict[str, list[bool]] = {name: [] for name, bounds in QVH_LENGTH_RANGES.items() if bounds}
    for g in gt:
        truth = np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2)
        hit = (temporal_iou(truth, windows.get(g["qid"], none)) >= threshold).any(axis=1)
        for (start, end), h in zip(truth, hit):
            name = next((n for n in found if QVH_LENGTH_RANGES[n][0] < end - start <= QVH_LENGTH_RANGES[n][1]), None)
            if name:
                found[name].append(bool(h))
    return {n: round(100.0 * sum(f) / len(f), 2) if f else None for n, f in found.items()}


def distinct_windows(records: list[dict], threshold: float = 0.7) -> float | None:
    """Mean number of distinct windows a query is submitted (2 dp; None without records): taken in the submitted
    order, a window counts when its IoU with every window counted before it is below ``threshold``, so ten
    submitted windows that are near-copies of two count 2. Soft-NMS (sdst.postprocess) lowers a copy's score but
    keeps it in the list, where it takes the place of a window elsewhere."""
    counts = []
    for r in records:
        kept: list = []
        for w in submitted_windows(r):
            if not kept or (temporal_iou(w[None], np.asarray(kept)) < threshold).all():
                kept.append(w)
        counts.append(len(kept))
    return round(float(np.mean(counts)), 2) if counts else None


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


def pct(x: float) -> float:
    """Fraction -> percent with 2 decimals (the official formatting)."""
    return float(f"{100 * x:.2f}")


def mr_block(listed, listed_valid, gt, gt_valid, r1_thresholds) -> tuple[dict, dict, np.ndarray]:
    """({"MR-mAP": {thr: %, "average": %}}, {"MR-R1": {thr: %}}, top-1 IoUs) for the given queries.

    ``listed`` (Q, K, 3) are the windows read, in submission order (:func:`listed_windows`).
    """
    ap = mr_average_precision(*by_score(listed, listed_valid), gt, gt_valid).mean(0)  # (T,)
    m_ap = {str(t): pct(v) for t, v in zip(MAP_IOU_THRESHOLDS, ap)}
    m_ap["average"] = pct(ap.mean())
    ious = top1_iou(listed, listed_valid, gt, gt_valid)
    r1 = {str(t): pct(np.mean(ious >= t)) for t in r1_thresholds}
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


def saliency_arrays(submission: Sequence[dict], ground_truth: Sequence[dict]):
    """Predicted and GT clip scores.

    Returns ``pred`` (Q, P) with ``pred_len`` (Q,), the raw predictions; ``gt_scores`` (Q, L, 3) annotator
    scores over int(duration / 2) clips (0 outside the relevant clips) with ``gt_len`` (Q,).
    """
    n_q = len(ground_truth)
    pred_len = np.fromiter((len(d["pred_saliency_scores"]) for d in submission), dtype=np.int64, count=n_q)
    pred = np.zeros((n_q, int(pred_len.max(initial=0))))
    pred[np.arange(pred.shape[1])[None, :] < pred_len[:, None]] = np.fromiter(
        (x for d in submission for x in d["pred_saliency_scores"]), dtype=float, count=int(pred_len.sum()))
    gt_len = np.fromiter((int(d["duration"] / QVH_CLIP) for d in ground_truth), dtype=np.int64, count=n_q)
    gt_scores = np.zeros((n_q, int(gt_len.max(initial=0)), NUM_ANNOTATORS))
    n_rel = np.fromiter((len(d["relevant_clip_ids"]) for d in ground_truth), dtype=np.int64, count=n_q)
    if n_rel.sum():
        rows = np.repeat(np.arange(n_q), n_rel)
        cols = np.fromiter((i for d in ground_truth for i in d["relevant_clip_ids"]), dtype=np.int64,
                           count=int(n_rel.sum()))
        gt_scores[rows, cols] = np.array([s for d in ground_truth for s in d["saliency_scores"]], dtype=float)
    return pred, pred_len, gt_scores, gt_len


def highlight_metrics(submission: Sequence[dict], ground_truth: Sequence[dict]) -> dict:
    """{"HL-min-<level>": {"HL-mAP": %, "HL-Hit1": %}} for the Fair/Good/VeryGood levels."""
    for i, d in enumerate(ground_truth):
        if "relevant_clip_ids" not in d:
            raise AnnotationError(f"ground truth record {i + 1} (qid {d['qid']!r}): missing field "
                                  "'relevant_clip_ids' (needed for the highlight metrics)")
    pred, pred_len, gt_scores, gt_len = saliency_arrays(submission, ground_truth)
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
        out[f"HL-min-{name}"] = {"HL-mAP": pct(ap[:, j].mean()), "HL-Hit1": pct(hit.mean())}
    return out
