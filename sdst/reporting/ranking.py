"""The significance report's sections on the first window (issue 21 point 5), from each model's aggregated
metrics.json (sdst.reporting.aggregate), mean ± std over seeds (ddof = 1):

- "Finding the window vs ranking it": R1@0.7, best-window R1@0.7 (the R1@0.7 a perfect ranking of the submitted
  windows would give) and the difference, what the ranking loses, how many of the submitted windows are
  distinct, the share of each length range's ground-truth windows that a submitted window reaches, and whether the
  windows are as long as the moments (the best-overlapping window's width over the moment's, how many windows of
  each length are submitted);
- "Where the first window lands": every query by what its first window is (sdst.first_window), and on a
  generated events dataset the events a window elsewhere overlaps and R1@0.7 per query kind and asked change."""

from __future__ import annotations

import json
from pathlib import Path

from sdst.first_window import CATEGORIES, ELSEWHERE, GROUPS, PREFIX
from sdst.metrics import QVH_LENGTH_RANGES
from sdst.reporting.aggregate import BEST_WINDOW, DISTINCT, FOUND, SUBMITTED, WIDE, WIDTH
from sdst.reporting.over_seeds import cell

R1 = ("MR-full-R1@0.7", "MR-R1@0.7")  # QVHighlights-style, then Charades-STA / TACoS
RANGES = [name for name, bounds in QVH_LENGTH_RANGES.items() if bounds]  # short, middle, long
EXPLAIN = {"query kind": "simple: what happens to an object; while, after, before: composed with another object's "
                         "event or presence",
           "asked change": "what the query asks to happen to its object"}


def _headline(paths: list[str]):
    for path in paths:
        m = json.loads(Path(path).read_text())
        yield m, m["splits"][m["headline_split"]]


def _values(split: dict, key: str) -> list | None:
    values = (split.get(key) or {}).get("values")
    return None if not values or any(v is None for v in values) else values


def section(paths: list[str]) -> str:
    """Markdown of both sections; each is left out when no model has its values."""
    return "\n".join(s for s in (_ranking(paths), _landing(paths)) if s)


def _ranking(paths: list[str]) -> str:
    tables: dict = {}
    for m, split in _headline(paths):
        r1 = next((k for k in R1 if k in split), None)
        best = _values(split, BEST_WINDOW)
        if r1 is None or best is None:
            continue
        values = split[r1]["values"]
        lost = [None if a is None else b - a for a, b in zip(values, best)]
        distinct = _values(split, DISTINCT) or [None]  # absent from a metrics.json aggregated before it existed
        tables.setdefault((m["dataset"], m["headline_split"]), []).append((m["model"], values, best, lost, distinct,
                                                                           split))
    if not tables:
        return ""
    lines = ["## Finding the window vs ranking it", "",
             "R1@0.7 counts a query when the first window submitted reaches IoU ≥ 0.7 with a ground-truth window; "
             "best-window R1@0.7 when any of the windows submitted (up to 10) does, the R1@0.7 a perfect ranking of "
             "them would give. Their difference is what the ranking loses. Distinct windows: how many of the "
             "windows submitted per query remain when a window within IoU 0.7 of one listed before it counts once "
             "(a short list of distinct windows leaves little to find). Mean ± std over seeds.", ""]
    for (dataset, split), rows in tables.items():
        lines += [f"### {dataset} ({split} split)", "",
                  "| model | R1@0.7 | best-window R1@0.7 | lost to the ranking | distinct windows |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {model} | {cell(r1)} | {cell(best)} | {cell(lost)} | {cell(distinct)} |"
                  for model, r1, best, lost, distinct, _ in rows]
        lines.append("")
        found = [(row[0], row[-1]) for row in rows if any(_values(row[-1], FOUND + r) is not None for r in RANGES)]
        if found:
            lines += ["The ground-truth windows of each length range (the evaluator's, s) that one of the windows "
                      "submitted for their query reaches with IoU ≥ 0.7, in percent of that range's windows "
                      "(`MR-windows-found-*`): finding the window, by its length.", ""]
            lines += _table(found, [f"{r} ({QVH_LENGTH_RANGES[r][0]:g}, {QVH_LENGTH_RANGES[r][1]:g}]" for r in RANGES],
                            [FOUND + r for r in RANGES])
        widths = [(row[0], row[-1]) for row in rows if any(_values(row[-1], WIDTH + r) is not None for r in RANGES)]
        if widths:
            truth = {r: (_values(widths[0][1], SUBMITTED + "ground-truth-" + r) or [None])[0] for r in RANGES}
            lines += ["Are the windows as long as the moments? Per length range: the median, over its ground-truth "
                      "windows, of the width of the submitted window that overlaps each most over the window's own "
                      "(`MR-width-ratio-*`; 2 = twice as long), the percent of them where it is more than twice as "
                      "long (`MR-width-over-2x-*`), and the percent of all submitted windows with a length in the "
                      "range (`MR-submitted-*`; the ground truth's windows: "
                      + ", ".join(f"{r} {'–' if truth[r] is None else f'{truth[r]:.2f}'} %" for r in RANGES) + ").",
                      ""]
            lines += _table(widths, [f"{k} {r}" for k in ("width ratio", "over 2x (%)", "submitted (%)")
                                     for r in RANGES],
                            [p + r for p in (WIDTH, WIDE, SUBMITTED) for r in RANGES])
    return "\n".join(lines)


def _table(rows: list, columns: list[str], keys: list[str]) -> list[str]:
    out = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    out += [f"| {model} | " + " | ".join(cell(_values(split, k) or [None]) for k in keys) + " |"
            for model, split in rows]
    return out + [""]


def _landing(paths: list[str]) -> str:
    tables: dict = {}
    for m, split in _headline(paths):
        if _values(split, PREFIX + "hit") is not None:
            tables.setdefault((m["dataset"], m["headline_split"]), []).append((m["model"], split))
    if not tables:
        return ""
    lines = ["## Where the first window lands", "",
             "Every query by what its first-ranked window is, in percent of the queries, mean ± std over seeds "
             "(first match wins): " + "; ".join(f"*{k}*: {v}" for k, v in CATEGORIES.items()) + ". *hit* is "
             "R1@0.7.", ""]
    for (dataset, split), rows in tables.items():
        lines += [f"### {dataset} ({split} split)", ""]
        lines += _table(rows, list(CATEGORIES), [PREFIX + k for k in CATEGORIES])
        events = [(model, s) for model, s in rows if _values(s, PREFIX + next(iter(ELSEWHERE))) is not None]
        if events:
            lines += ["*elsewhere* by the events of the generated video the window overlaps (first match wins; "
                      "percent of all queries): " + "; ".join(f"*{k}*: {v}" for k, v in ELSEWHERE.items()) + ".", ""]
            lines += _table(events, list(ELSEWHERE), [PREFIX + k for k in ELSEWHERE])
            sizes = next((s["_query_groups"] for _, s in events if s.get("_query_groups")), {})
            for name, (prefix, _) in GROUPS.items():
                if not sizes.get(name):
                    continue
                lines += [f"R1@0.7 per {name} ({EXPLAIN[name]}; queries of each in brackets). A group of n queries "
                          "moves by 100 / n points per query.", ""]
                lines += _table(events, [f"{k} ({n})" for k, n in sizes[name].items()],
                                [prefix + k for k in sizes[name]])
    return "\n".join(lines)
