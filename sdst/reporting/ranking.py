"""The significance report's "finding the window vs ranking it" section (issue 21 point 5): per model its R1@0.7,
its best-window R1@0.7 (sdst.reporting.aggregate: the R1@0.7 a perfect ranking of its submitted windows would
give) and the difference, what the ranking loses, each mean ± std over seeds (ddof = 1)."""

from __future__ import annotations

import json
from pathlib import Path

from sdst.reporting.aggregate import BEST_WINDOW
from sdst.reporting.over_seeds import cell

R1 = ("MR-full-R1@0.7", "MR-R1@0.7")  # QVHighlights-style, then Charades-STA / TACoS


def section(paths: list[str]) -> str:
    """Markdown from the aggregated metrics.json of each (dataset, model); "" when none has the best-window value."""
    tables: dict = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        split = m["splits"][m["headline_split"]]
        r1 = next((k for k in R1 if k in split), None)
        best = (split.get(BEST_WINDOW) or {}).get("values")
        if r1 is None or not best or any(v is None for v in best):
            continue
        values = split[r1]["values"]
        lost = [None if a is None else b - a for a, b in zip(values, best)]
        tables.setdefault((m["dataset"], m["headline_split"]), []).append((m["model"], values, best, lost))
    if not tables:
        return ""
    lines = ["## Finding the window vs ranking it", "",
             "R1@0.7 counts a query when the first window submitted reaches IoU ≥ 0.7 with a ground-truth window; "
             "best-window R1@0.7 when any of the windows submitted (up to 10) does, the R1@0.7 a perfect ranking of "
             "them would give. Their difference is what the ranking loses. Mean ± std over seeds.", ""]
    for (dataset, split), rows in tables.items():
        lines += [f"### {dataset} ({split} split)", "", "| model | R1@0.7 | best-window R1@0.7 | lost to the ranking |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {model} | {cell(r1)} | {cell(best)} | {cell(lost)} |" for model, r1, best, lost in rows]
        lines.append("")
    return "\n".join(lines)
