"""Moments by their length in clips (issue 21 point 5): which lengths a run's windows reach, and whether its
per-clip saliency already singles them out.

Both read submission records and the ground truth of the same queries (QVHighlights format, as
``python -m sdst.infer`` writes them). A ground-truth window of length L s counts as round(L / clip_len) clips;
on datasets whose windows are on the clip grid (demo, demo_hard, QVHighlights) that is its exact clip count.

- :func:`found_by_clips`: per clip count, the percent of the ground-truth windows that one of the windows
  submitted for their query reaches with IoU >= ``threshold`` (what ``sdst.metrics.windows_found`` counts per
  length range, finer);
- :func:`saliency_first`: per clip count, the percent of the ground-truth windows whose highest-scoring clip
  (``pred_saliency_scores``) outscores every clip outside the query's ground-truth windows: the dense stream
  has the moment where no window is asked of it (:func:`first_by_window`, per window of one query).

bench/fit_by_length.py prints both on a run's own training queries and on its reported split.
"""

from __future__ import annotations

import numpy as np

from sdst.metrics import submitted_windows, temporal_iou


def _windows(g: dict) -> np.ndarray:
    return np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2)


def _percent(hits: dict[int, list[bool]]) -> dict[int, tuple[float, int]]:
    return {n: (round(100.0 * sum(h) / len(h), 2), len(h)) for n, h in sorted(hits.items())}


def found_by_clips(records: list[dict], gt: list[dict], clip_len: float,
                   threshold: float = 0.7) -> dict[int, tuple[float, int]]:
    """{clips: (percent found, number of ground-truth windows)}; a query without a record finds nothing."""
    submitted = {r["qid"]: submitted_windows(r) for r in records}
    hits: dict[int, list[bool]] = {}
    for g in gt:
        truth = _windows(g)
        found = (temporal_iou(truth, submitted.get(g["qid"], np.zeros((0, 2)))) >= threshold).any(axis=1)
        for (start, end), f in zip(truth, found):
            hits.setdefault(int(round((end - start) / clip_len)), []).append(bool(f))
    return _percent(hits)


def saliency_first(records: list[dict], gt: list[dict], clip_len: float) -> dict[int, tuple[float, int]]:
    """{clips: (percent whose best clip outscores every clip outside the query's ground truth, windows)}."""
    by_qid = {r["qid"]: r for r in records}
    hits: dict[int, list[bool]] = {}
    for g in gt:
        r = by_qid.get(g["qid"])
        truth = _windows(g)
        for (start, end), first in zip(truth, first_by_window(r["pred_saliency_scores"] if r else [], truth,
                                                              clip_len)):
            hits.setdefault(int(round((end - start) / clip_len)), []).append(first)
    return _percent(hits)


def first_by_window(scores, truth: np.ndarray, clip_len: float) -> list[bool]:
    """Per ground-truth window of one query ((G, 2) start, end, in s): does its best clip outscore every clip
    outside the query's windows? A clip belongs to a window when they overlap by more than half a clip; ties count
    as not first."""
    scores = np.asarray(scores, dtype=float)
    clips = np.arange(len(scores)) * clip_len
    overlap = np.clip(np.minimum(clips[None] + clip_len, truth[:, 1:]) - np.maximum(clips[None], truth[:, :1]),
                      0, None)
    inside = overlap > clip_len / 2  # (windows, clips)
    outside = scores[~inside.any(0)]
    return [bool(own.any()) and (not len(outside) or bool(scores[own].max() > outside.max())) for own in inside]
