"""The scores the significance statistics rank (sdst.reporting.stats): a CSV with the columns
``model,dataset,metric,seed,value``, or a list of such dicts, read with errors naming the file and line (or the
record). An empty / ``NA`` / ``nan`` value cell is a missing value: its block is dropped, and the report says so.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

COLUMNS = ("model", "dataset", "metric", "seed", "value")
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "none", "null", "-"})


class ScoresError(ValueError):
    """Bad scores input (the message names the file or record and what is wrong)."""


class ScoresFileNotFoundError(FileNotFoundError):
    """The scores file does not exist."""


def _parse_value(raw, where: str) -> float:
    """A score cell -> float; NaN marks a missing value (the block will be dropped)."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool):
        raise ScoresError(f"{where}: value {raw!r} is not a number")
    if isinstance(raw, (int, float, np.integer, np.floating)):
        v = float(raw)
    else:
        text = str(raw).strip()
        if text.lower() in MISSING_TOKENS:
            return math.nan
        try:
            v = float(text)
        except ValueError:
            raise ScoresError(f"{where}: value {text!r} is not a number") from None
    if math.isinf(v):
        raise ScoresError(f"{where}: value {raw!r} is not finite")
    return v


def _check_record(rec: Mapping, where: str) -> tuple[str, str, str, str, float]:
    out = []
    for col in COLUMNS[:4]:
        val = rec.get(col)
        text = "" if val is None else str(val).strip()
        if not text:
            raise ScoresError(f"{where}: empty {col!r}")
        out.append(text)
    return (*out, _parse_value(rec.get("value"), where))


def read_scores(path: str | os.PathLike) -> list[tuple[str, str, str, str, float, str]]:
    """Read a scores CSV -> rows (model, dataset, metric, seed, value, where).

    ``where`` is ``"<file>:line <n>"`` (1-based physical line, header = line 1), used in errors.
    """
    path = Path(path)
    if not path.is_file():
        raise ScoresFileNotFoundError(f"{path}: scores file not found")
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ScoresError(f"{path}: empty file (expected a header {','.join(COLUMNS)})") from None
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ScoresError(
                f"{path}: line 1: header lacks column(s) {', '.join(missing)} "
                f"(expected {','.join(COLUMNS)}, got {','.join(header)})"
            )
        dup = sorted({h for h in header if header.count(h) > 1 and h in COLUMNS})
        if dup:
            raise ScoresError(f"{path}: line 1: duplicate column(s) {', '.join(dup)}")
        idx = {c: header.index(c) for c in COLUMNS}
        start = reader.line_num + 1
        for cells in reader:
            where = f"{path}: line {start}"
            start = reader.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                raise ScoresError(f"{where}: {len(cells)} fields, header has {len(header)}")
            rec = {c: cells[i] for c, i in idx.items()}
            rows.append((*_check_record(rec, where), where))
    return rows


def read_rows(scores) -> list[tuple[str, str, str, str, float, str]]:
    if isinstance(scores, (str, os.PathLike)):
        return read_scores(scores)
    if not isinstance(scores, Iterable) or isinstance(scores, Mapping):
        raise ScoresError(f"scores must be a CSV path or a list of dicts, got {type(scores).__name__}")
    rows = []
    for i, rec in enumerate(scores):
        where = f"scores record {i}"
        if not isinstance(rec, Mapping):
            raise ScoresError(f"{where}: expected a dict, got {type(rec).__name__}")
        missing = [c for c in COLUMNS if c not in rec]
        if missing:
            raise ScoresError(f"{where}: missing key(s) {', '.join(missing)}")
        rows.append((*_check_record(rec, where), where))
    return rows
