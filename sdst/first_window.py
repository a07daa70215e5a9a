"""Where the first-ranked window lands (issue 21 point 5). R1@0.7 counts the queries whose first window reaches
IoU ≥ 0.7 with a ground-truth window; this sorts every query by what its first window is, so that a model's miss
can be told apart: a loose boundary, a piece of the moment, several windows merged into one, or somewhere else.

On a generated ``events`` dataset (demo_hard; extract.demo_plans regenerates what each video shows) "somewhere
else" is split further by the events the window overlaps, first match wins: the asked object's asked change at a
time the query excludes (a composed query's relation ignored), the same kind of change on another object (the
object confused), another change of the asked object (the change confused), another event, no event. R1@0.7 is
also given per query kind (simple, while, after, before) and per asked change (colour, grow, shrink, flash, vanish).

Shares of queries in percent, 2 dp; the categories of one level sum to 100 up to rounding.
"""

from __future__ import annotations

import numpy as np

from extract.demo_shapes import CLIP
from sdst.metrics import temporal_iou

# first window -> category, in this order (IoU as the official evaluator computes it, sdst.metrics.temporal_iou)
CATEGORIES = {
    "hit": "IoU ≥ 0.7 with a ground-truth window (R1@0.7)",
    "loose": "0.5 ≤ IoU < 0.7",
    "partial": "IoU < 0.5, overlaps one ground-truth window",
    "merged": "IoU < 0.5, overlaps two or more ground-truth windows",
    "elsewhere": "overlaps no ground-truth window",
}
ELSEWHERE = {  # "elsewhere" on a generated events dataset, by the events the window overlaps
    "asked change, excluded time": "the asked object's asked change, at a time the query's relation excludes",
    "same change, other object": "the asked kind of change on another object",
    "other change, same object": "another change of the asked object",
    "other event": "another object's other change",
    "no event": "no event",
}
PREFIX = "MR-first-window-"
# R1@0.7 per group of queries on a generated events dataset: group -> (key prefix, the group of a query's plan)
GROUPS = {"query kind": ("MR-R1@0.7-query-", lambda q: q["kind"]),
          "asked change": ("MR-R1@0.7-change-", lambda q: q["target"][1])}


def _overlaps(a, b) -> bool:
    return min(a[1], b[1]) > max(a[0], b[0])


def classify(window, gt_windows) -> str:
    """The CATEGORIES key of one first window [s, e] (seconds) against a query's ground-truth windows."""
    best = float(temporal_iou(np.asarray([window], dtype=float), np.asarray(gt_windows, dtype=float)).max())
    if best >= 0.7:
        return "hit"
    if best >= 0.5:
        return "loose"
    n = sum(_overlaps(window, g) for g in gt_windows)
    return "merged" if n >= 2 else "partial" if n == 1 else "elsewhere"


def classify_elsewhere(window, plan: dict, query: dict) -> str:
    """The ELSEWHERE key of a window that overlaps none of the query's windows, from the video's plan."""
    obj, etype, param = query["target"]
    hit = [(i, ev) for i, o in enumerate(plan["objects"]) for ev in o["events"]
           if _overlaps(window, [ev["clips"][0] * CLIP, ev["clips"][1] * CLIP])]
    if any(i == obj and ev["type"] == etype and ev["param"] == param for i, ev in hit):
        return "asked change, excluded time"
    if any(i != obj and ev["type"] == etype for i, ev in hit):
        return "same change, other object"
    if any(i == obj for i, _ in hit):
        return "other change, same object"
    return "other event" if hit else "no event"


def breakdown(records: list[dict], gt: list[dict], plans: dict | None = None) -> dict[str, float]:
    """``PREFIX + category`` -> percent of the ``gt`` queries, and with ``plans`` (qid -> (video plan, query
    plan), extract.demo_plans.query_plans) ``PREFIX + ELSEWHERE key`` and, for each of GROUPS, its prefix + the
    group's value (R1@0.7 of those queries). A query without predictions counts as elsewhere (no event)."""
    first = {r["qid"]: r["pred_relevant_windows"][0][:2] for r in records if r["pred_relevant_windows"]}
    keys = list(CATEGORIES) + (list(ELSEWHERE) if plans is not None else [])
    counts = dict.fromkeys(keys, 0)
    groups: dict[str, list[int]] = {}
    for g in gt:
        w = first.get(g["qid"])
        cat = "elsewhere" if w is None else classify(w, g["relevant_windows"])
        counts[cat] += 1
        if plans is not None:
            plan, q = plans[g["qid"]]
            if cat == "elsewhere":
                counts["no event" if w is None else classify_elsewhere(w, plan, q)] += 1
            for prefix, of in GROUPS.values():
                groups.setdefault(prefix + str(of(q)), [0, 0])[cat == "hit"] += 1
    out = {PREFIX + k: round(100.0 * v / len(gt), 2) for k, v in counts.items()}
    out.update({k: round(100.0 * hits / (hits + misses), 2) for k, (misses, hits) in sorted(groups.items())})
    return out


def group_sizes(gt: list[dict], plans: dict) -> dict[str, dict[str, int]]:
    """Queries per group value, for each of GROUPS: {"query kind": {"simple": n, ...}, "asked change": {...}}."""
    out: dict[str, dict[str, int]] = {}
    for name, (_, of) in GROUPS.items():
        sizes: dict[str, int] = {}
        for g in gt:
            value = str(of(plans[g["qid"]][1]))
            sizes[value] = sizes.get(value, 0) + 1
        out[name] = dict(sorted(sizes.items()))
    return out
