"""The README's demo_hard comparison table (issue 21; README "demo_hard"), from a built significance report.

    .venv/bin/python bench/readme_table.py [--report results/demo_hard/significance/report.json]
                                           [--results results/demo_hard] [--readme README.md]

Prints one row per model in the report's mean-rank order: the mean rank (report.json), then mean ± std over seeds
of the headline split's R1@0.5, R1@0.7, mAP, the short / middle / long mAP (means), the highlight-detection mAP and
HIT@1 (VeryGood) and the best-window R1@0.7, each read from the model's aggregated ``metrics.json``
(sdst.reporting.aggregate) beside the report's inputs. With ``--readme``, the table between the README's
``<!-- interim-table -->`` markers is replaced by it instead (nothing else in the file changes).
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import json
from pathlib import Path

from sdst.reporting.aggregate import BEST_WINDOW
from sdst.reporting.over_seeds import cell, mean_std

START, END = "<!-- interim-table -->", "<!-- /interim-table -->"
COLUMNS = [("R1@0.5", "MR-full-R1@0.5"), ("R1@0.7", "MR-full-R1@0.7"), ("mAP", "MR-full-mAP"),
           ("short / middle / long mAP", ("MR-short-mAP", "MR-middle-mAP", "MR-long-mAP")),
           ("HD mAP", "HL-min-VeryGood-mAP"), ("HIT@1", "HL-min-VeryGood-Hit1"),
           ("best-window R1@0.7", BEST_WINDOW)]


def _mean(split: dict, key: str) -> str:
    mean, _ = mean_std((split.get(key) or {}).get("values") or [None])
    return "–" if mean is None else f"{mean:.2f}"


def table(report: Path, results: Path) -> str:
    ranks = json.loads(report.read_text())["mean_rank"]
    lines = ["| model | mean rank | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|---:|" + "".join("---|" if isinstance(key, tuple) else "---:|" for _, key in COLUMNS)]
    for model, rank in sorted(ranks.items(), key=lambda item: item[1]):
        m = json.loads((results / model / "metrics.json").read_text())
        split = m["splits"][m["headline_split"]]
        cells = [" / ".join(_mean(split, k) for k in key) if isinstance(key, tuple)
                 else cell((split.get(key) or {}).get("values") or [None]) for _, key in COLUMNS]
        lines.append(f"| `{model}` | {rank:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace(readme: Path, text: str) -> None:
    body = readme.read_text()
    start, end = body.find(START), body.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {START} ... {END} block to replace")
    readme.write_text(body[:start + len(START)] + "\n" + text + body[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, default=Path("results/demo_hard/significance/report.json"))
    p.add_argument("--results", type=Path, default=None,
                   help="the folder of each model's metrics.json (default: the report folder's parent)")
    p.add_argument("--readme", type=Path, default=None, help="replace the table in this README instead of printing")
    args = p.parse_args(argv)
    text = table(args.report, args.results or args.report.parent.parent)
    if args.readme:
        replace(args.readme, text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
