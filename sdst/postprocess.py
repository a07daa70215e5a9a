"""Inference post-processing (§C.4): confidence, soft-NMS, top windows, submission records.

Confidence = sqrt(p · actionness) (Eq. 23); Gaussian soft-NMS [decided, ActionFormer: σ = 0.5] decays the
scores of windows overlapping a kept one; the top 10 are written, best first, and always 10 when the model
proposes at least 10 valid windows (the official evaluator reads the first 10 listed; a score floor would
leave it fewer, however low the scores, and cost recall in its mAP).
Records follow the QVHighlights submission format for every dataset (evaluation.md).
"""

from __future__ import annotations

import numpy as np

TOP_K = 10


def soft_nms(windows: np.ndarray, scores: np.ndarray, sigma: float = 0.5,
             top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS. windows (N, 2) [start, end], scores (N,) -> min(N, top_k) windows and their decayed
    scores, in the order picked (descending decayed score). No score floor: decay reorders, never drops."""
    windows = np.asarray(windows, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).copy()
    keep_w, keep_s = [], []
    alive = np.ones(len(scores), dtype=bool)
    while alive.any() and len(keep_w) < top_k:
        i = int(np.argmax(np.where(alive, scores, -np.inf)))
        keep_w.append(windows[i])
        keep_s.append(scores[i])
        alive[i] = False
        inter = np.clip(np.minimum(windows[:, 1], windows[i, 1]) - np.maximum(windows[:, 0], windows[i, 0]), 0, None)
        union = (windows[:, 1] - windows[:, 0]) + (windows[i, 1] - windows[i, 0]) - inter
        iou = inter / np.maximum(union, 1e-9)
        scores = np.where(alive, scores * np.exp(-(iou ** 2) / sigma), scores)
    return np.asarray(keep_w).reshape(-1, 2), np.asarray(keep_s)


def confidence(logits, actionness) -> np.ndarray:
    """Eq. 23: sqrt(sigmoid(logit) · actionness)."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return np.sqrt(np.clip(p * np.asarray(actionness, dtype=np.float64), 0.0, None))


def ranking_scores(out: dict, use_actionness: bool = True) -> np.ndarray:
    """The score each proposal is ranked by, (B, N): Eq. 23's confidence where the outputs have an actionness (and
    ``use_actionness``), the class probability p otherwise."""
    logits = out["pred_logits"].float().cpu().numpy()
    act = out.get("pred_actionness")
    if act is None or not use_actionness:
        return 1.0 / (1.0 + np.exp(-logits))  # in float32, as the records were always written
    return confidence(logits, act.float().cpu().numpy())


def timeline(meta: dict, clip_len: float) -> tuple[float, float]:
    """(length of the feature timeline, the duration windows are clipped to: the video's own where it is shorter)
    of one query's metadata (qid, vid, n_clips, duration)."""
    length = meta["n_clips"] * clip_len
    return length, (min(length, meta["duration"]) if meta.get("duration") else length)


def span_windows(spans: np.ndarray, length: float, duration: float) -> np.ndarray:
    """(centre, width) spans (N, 2) in [0, 1] of the feature timeline's ``length`` -> [start, end] windows in
    seconds (N, 2), clipped to [0, duration]."""
    se = np.stack([spans[:, 0] - spans[:, 1] / 2, spans[:, 0] + spans[:, 1] / 2], -1) * length
    return np.clip(se, 0.0, duration)


def to_records(out: dict, meta: list[dict], clip_len: float, sigma: float = 0.5, top_k: int = TOP_K,
               use_actionness: bool = True) -> list[dict]:
    """Model outputs of one batch -> submission records.

    out: pred_logits (B, N), pred_spans (B, N, 2) (centre, width) in [0, 1] of the valid length,
    pred_actionness (B, N) (optional), saliency (B, T); meta: per sample qid, query, vid, n_clips, duration.
    """
    all_scores = ranking_scores(out, use_actionness)
    spans = out["pred_spans"].float().cpu().numpy()
    sal = out["saliency"].float().cpu().numpy()
    records = []
    for i, m in enumerate(meta):
        scores = all_scores[i]
        se = span_windows(spans[i], *timeline(m, clip_len))
        ok = se[:, 1] > se[:, 0]
        windows, kept = soft_nms(se[ok], scores[ok], sigma=sigma, top_k=top_k)
        records.append({
            "qid": m["qid"], "query": m["query"], "vid": m["vid"],
            "pred_relevant_windows": [[round(float(s), 4), round(float(e), 4), round(float(c), 6)]
                                      for (s, e), c in zip(windows, kept)],
            "pred_saliency_scores": [round(float(x), 6) for x in sal[i, : m["n_clips"]]],
        })
    return records
