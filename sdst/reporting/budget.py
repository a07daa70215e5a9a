"""Did every run reach its plateau? (issue 21 point 2: every model trains until its selection score has plateaued,
the selected epoch is not the last one, under one budget rule for all.)

A run stops once its selection score has not improved for ``train.patience`` epochs, or at ``train.epochs``
(sdst.train.stops_before). Per run, from its ``train_summary.json`` and ``train_log.csv``: the selected epoch, the
epochs trained, whether the epoch cap stopped it, and the longest wait between two improvements of the selection
score before the selected epoch (the epochs are 1-based, an improvement is a strictly higher score, as sdst.train
selects). ``run_budget`` feeds sdst.reporting.aggregate (``training.runs`` of metrics.json); ``section`` is the
significance report's "Training budget"."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class BudgetError(ValueError):
    """A run's training log disagrees with its summary."""


def improvements(scores: list[float]) -> list[int]:
    """The 1-based epochs whose selection score is higher than every earlier one (the first epoch always is)."""
    out, best = [], None
    for epoch, score in enumerate(scores, 1):
        if best is None or score > best:
            out.append(epoch)
            best = score
    return out


def run_budget(run: str | Path) -> dict:
    """{seed, best_epoch, epochs_trained, epochs, at_cap, longest_wait} of one run directory; the values
    a file does not hold are None (a summary written before ``epochs``, a run without train_log.csv)."""
    run = Path(run)
    summary = json.loads((run / "train_summary.json").read_text())
    best, trained, cap = summary.get("best_epoch"), summary.get("epochs_trained"), summary.get("epochs")
    out = {"seed": int(run.name.removeprefix("seed")), "best_epoch": best, "epochs_trained": trained, "epochs": cap,
           "at_cap": None if trained is None or cap is None else trained >= cap, "longest_wait": None}
    log = run / "train_log.csv"
    if not log.is_file():
        return out
    with log.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "select_score" not in rows[0]:
        return out
    try:
        scores = [float(r["select_score"]) for r in rows]
    except (TypeError, ValueError) as err:
        raise BudgetError(f"{log}: a select_score that is not a number ({err})") from None
    steps = improvements(scores)
    if trained is not None and len(scores) != trained:
        raise BudgetError(f"{log}: {len(scores)} epochs logged, train_summary.json says {trained} were trained")
    if best is not None and steps[-1] != best:
        raise BudgetError(f"{log}: the best selection score is at epoch {steps[-1]}, "
                          f"train_summary.json selected epoch {best}")
    out["longest_wait"] = max((b - a for a, b in zip(steps, steps[1:])), default=0)
    return out


def _row(model: str, runs: list[dict]) -> str:
    epochs = ", ".join("–" if r["best_epoch"] is None else
                       f"{r['best_epoch']} ({'–' if r['epochs_trained'] is None else r['epochs_trained']})"
                       for r in runs)
    waits = [r for r in runs if r["longest_wait"] is not None]
    longest = max(waits, key=lambda r: r["longest_wait"], default=None)
    wait = "–" if longest is None else f"{longest['longest_wait']} (seed {longest['seed']})"
    capped = [r for r in runs if r["at_cap"]]
    cap = ", ".join(f"seed {r['seed']}: best {r['best_epoch']} of {r['epochs']}" for r in capped) or (
        "–" if any(r["at_cap"] is None for r in runs) else "none")
    return f"| {model} | {len(runs)} | {epochs} | {wait} | {cap} |"


def section(paths: list[str]) -> str:
    """Markdown per dataset, a row per model, from the aggregated metrics.json (a model aggregated before
    ``training.runs`` existed is left out; no section when none has them)."""
    tables: dict[str, list[str]] = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        runs = m.get("training", {}).get("runs")
        if runs:
            tables.setdefault(m["dataset"], []).append(_row(m["model"], runs))
    if not tables:
        return ""
    lines = ["## Training budget", "",
             "A run stops once its selection score has not improved for the patience, or at the epoch cap. Per "
             "model: the selected epoch and, in brackets, the epochs trained, seed by seed; the longest wait "
             "between two improvements of the selection score before the selected epoch (a wait close to the "
             "patience says a longer one might have found a later best); the runs the epoch cap stopped before the "
             "patience ran out (their score may still have been rising).", ""]
    for dataset, rows in tables.items():
        lines += [f"### {dataset}", "", "| model | seeds | best epoch (trained) | longest wait before the best | "
                  "stopped at the epoch cap |", "|---|---:|---|---:|---|", *rows, ""]
    return "\n".join(lines)
