"""The one reader and validator of the annotation format: QVHighlights JSON lines (evaluation.md).

Fields per line: ``qid`` (int, or str for TACoS), ``query``, ``duration`` (s), ``vid``,
``relevant_windows`` ([[start, end], ...] s; absent in unlabeled test files) and, for QVHighlights,
``relevant_clip_ids`` (2-s clip indices, each below int(duration / 2) as the official evaluator requires)
with ``saliency_scores`` (one [a, b, c] triple of 0-4 scores per relevant clip, 3 annotators). Every problem
is reported with the file, the 1-based line and the field.

Two rule sets read the same fields with the same code: :data:`STRICT` (training, extraction, pre-flight checks:
a query text and a video, 0 <= start < end, scores 0..4) and :data:`OFFICIAL`, the ground truth as the official
QVHighlights evaluator accepts it (jayleicn/moment_detr ``standalone_eval/eval.py``: it reads qid, duration,
windows and saliency only; a zero-length window [s, s] and a zero duration are data, scores are any numbers).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path


QVH_CLIP = 2  # seconds per saliency clip of QVHighlights: a video has int(duration / 2) of them (sdst.evaluate)
NUM_ANNOTATORS = 3  # saliency scores per relevant clip (QVHighlights)


@dataclass(frozen=True)
class Rules:
    """What a reader asks of a line beyond the shared format (types, lists, clip ids inside the video)."""

    text: bool  # 'query' and 'vid' are required (the evaluator reads neither)
    positive: bool  # duration > 0 and 0 <= start < end; otherwise duration >= 0 and start <= end (official)
    score_range: bool  # saliency scores in 0..4; otherwise any finite numbers (official)


STRICT = Rules(text=True, positive=True, score_range=True)
OFFICIAL = Rules(text=False, positive=False, score_range=False)


class AnnotationError(ValueError):
    """Malformed annotation file; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Query:
    qid: int | str
    query: str
    vid: str
    duration: float
    windows: tuple[tuple[float, float], ...]  # empty when the file has no labels
    clip_ids: tuple[int, ...] | None = None  # QVHighlights only
    saliency: tuple[tuple[int, int, int], ...] | None = None  # one triple per clip id
    source: str = ""  # "file:line", for messages

    @property
    def key(self) -> str:
        """qid as the string used for cache array names and dictionary keys."""
        return str(self.qid)


def is_real(value) -> bool:
    """A real number, not a bool (numpy scalars too: the evaluator also reads records built in memory)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _num(value, where: str, field: str) -> float:
    if not is_real(value) or not math.isfinite(value):
        raise AnnotationError(f"{where}: field '{field}' must be a finite number, got {value!r}")
    return float(value)


def parse_line(obj: dict, where: str, require_labels: bool = False, rules: Rules = STRICT) -> Query:
    """Validate one decoded JSON object; ``where`` is "file:line" for messages. ``require_labels``: the line
    must have a non-empty ``relevant_windows``. :data:`OFFICIAL` rules leave ``query``/``vid`` empty when absent."""
    if not isinstance(obj, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for field in ("qid", "query", "vid", "duration") if rules.text else ("qid", "duration"):
        if field not in obj:
            raise AnnotationError(f"{where}: missing field '{field}'")
    qid = obj["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or (isinstance(qid, str) and not qid):
        raise AnnotationError(f"{where}: field 'qid' must be an int or a non-empty string, got {qid!r}")
    if rules.text:
        if not isinstance(obj["query"], str) or not obj["query"].strip():
            raise AnnotationError(f"{where}: field 'query' must be a non-empty string")
        if not isinstance(obj["vid"], str) or not obj["vid"]:
            raise AnnotationError(f"{where}: field 'vid' must be a non-empty string")
    duration = _num(obj["duration"], where, "duration")
    if duration <= 0 if rules.positive else duration < 0:
        raise AnnotationError(f"{where}: field 'duration' must be {'> 0' if rules.positive else '>= 0'}, "
                              f"got {duration}")
    windows = _windows(obj, where, require_labels, rules)
    clip_ids = saliency = None
    if "relevant_clip_ids" in obj or "saliency_scores" in obj:
        clip_ids, saliency = _saliency(obj, where, duration, rules)
    return Query(qid=qid, query=obj.get("query", ""), vid=obj.get("vid", ""), duration=duration,
                 windows=windows, clip_ids=clip_ids, saliency=saliency, source=where)


def _windows(obj: dict, where: str, require_labels: bool, rules: Rules) -> tuple[tuple[float, float], ...]:
    raw = obj.get("relevant_windows")
    if raw is None:
        if require_labels:
            raise AnnotationError(f"{where}: missing field 'relevant_windows' (this split needs labels)")
        return ()
    if not isinstance(raw, (list, tuple)) or (require_labels and not raw):
        raise AnnotationError(f"{where}: field 'relevant_windows' must be a non-empty list of [start, end]")
    windows = []
    for i, w in enumerate(raw):
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise AnnotationError(f"{where}: relevant_windows[{i}] must be [start, end], got {w!r}")
        s = _num(w[0], where, f"relevant_windows[{i}][0]")
        e = _num(w[1], where, f"relevant_windows[{i}][1]")
        if rules.positive and (s < 0 or e <= s):
            raise AnnotationError(f"{where}: relevant_windows[{i}] = {w!r} needs 0 <= start < end")
        if not rules.positive and e < s:
            raise AnnotationError(f"{where}: relevant_windows[{i}] = {w!r} needs start <= end")
        windows.append((s, e))
    return tuple(windows)


def _saliency(obj: dict, where: str, duration: float, rules: Rules):
    """(clip ids, score triples) of a QVHighlights line; the scores are kept as ints (0..4) under STRICT rules."""
    ids, scores = obj.get("relevant_clip_ids"), obj.get("saliency_scores")
    if not isinstance(ids, (list, tuple)) or not isinstance(scores, (list, tuple)):
        raise AnnotationError(f"{where}: 'relevant_clip_ids' and 'saliency_scores' must both be lists "
                              "(the two fields go together)")
    if len(ids) != len(scores):
        raise AnnotationError(
            f"{where}: {len(ids)} relevant_clip_ids but {len(scores)} saliency_scores (one triple per clip)")
    n_clips = int(duration / QVH_CLIP)
    for i, (c, sc) in enumerate(zip(ids, scores)):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
            raise AnnotationError(f"{where}: relevant_clip_ids[{i}] must be a non-negative int, got {c!r}")
        if c >= n_clips:  # the evaluator rejects it, inside a job; say it before any job runs
            raise AnnotationError(f"{where}: relevant_clip_ids[{i}] = {c} is not a clip of the video: duration "
                                  f"{duration:g} s has int(duration / {QVH_CLIP}) = {n_clips} clips "
                                  f"(ids 0..{n_clips - 1})")
        if (not isinstance(sc, (list, tuple)) or len(sc) != NUM_ANNOTATORS
                or any(not is_real(v) or not math.isfinite(v)
                       or (rules.score_range and not 0 <= v <= 4) for v in sc)):
            wanted = "scores in 0..4" if rules.score_range else "finite numbers"
            raise AnnotationError(f"{where}: saliency_scores[{i}] must be {NUM_ANNOTATORS} {wanted}, got {sc!r}")
    if not rules.score_range:
        return tuple(ids), tuple(tuple(sc) for sc in scores)
    return tuple(ids), tuple(tuple(int(v) for v in sc) for sc in scores)


def text_lines(path: Path, error=ValueError):
    """(line number, text) of every non-blank line of a UTF-8 text file; a line that is not UTF-8 raises ``error``
    naming the file and the line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start + 1} of the line); "
                            "save the file as UTF-8") from None
            if line.strip():
                yield lineno, line


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-empty line; JSON errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    rows = []
    for lineno, line in text_lines(path, AnnotationError):
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as err:
            raise AnnotationError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
    return rows


def load_annotations(path: str | Path, require_labels: bool = False) -> list[Query]:
    """Parse and validate a whole file; duplicate qids are an error (they would collide in the cache)."""
    queries, seen = [], {}
    for lineno, obj in read_jsonl(path):
        q = parse_line(obj, f"{path}:{lineno}", require_labels=require_labels)
        if q.key in seen:
            raise AnnotationError(f"{path}:{lineno}: duplicate qid {q.qid!r} (first on line {seen[q.key]})")
        seen[q.key] = lineno
        queries.append(q)
    if not queries:
        raise AnnotationError(f"{path}: no annotations in file")
    return queries
