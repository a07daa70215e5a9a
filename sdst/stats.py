"""Significance report: Friedman test, Nemenyi post-hoc test and critical-difference diagram.

Follows Demšar (2006), "Statistical comparisons of classifiers over multiple data sets" (JMLR 7),
as asked for by the paper's §M. The models are the *treatments*; they are ranked *within* each
block, and a block is one (dataset, metric) pair (seeds averaged within the block) or, with
``block_by_seed``, one (dataset, metric, seed) triple.

The paper's §M reports chi2_F = 5.640 with p = 0.933 (chi-square with k - 1 = 8 dof gives
p = 0.687 for that statistic) and reads p > 0.05 as "we can reject the null hypothesis"; its
Nemenyi p-values (Tab. P: ~0.001 for Ours vs R2-Tuning / Flash-VTG) do not follow from its own
ranks in Tab. O (taken as lower-is-better scores, the 10 complete blocks give p = 0.35 and 0.98).
Nothing here is tuned to those numbers; every statistic is checked against scipy /
scikit-posthocs in the tests:

* Friedman: chi2_F = 12N/(k(k+1)) · [Σ_j Rbar_j² − k(k+1)²/4] / C with the tie correction
  C = 1 − Σ(t³ − t) / (N k (k² − 1)) (t: sizes of tied groups within a block), p from chi-square
  with k − 1 degrees of freedom -- the same as ``scipy.stats.friedmanchisquare``.
* Iman–Davenport: F_F = (N − 1) chi2_F / (N(k − 1) − chi2_F), F((k − 1), (k − 1)(N − 1)).
* Nemenyi: q_ij = |Rbar_i − Rbar_j| / sqrt(k(k+1)/(6N)), p_ij = P(Q_{k,inf} > q_ij·sqrt(2)) (the
  studentized range distribution), as ``scikit_posthocs.posthoc_nemenyi_friedman``.
* Critical difference: CD = q_alpha · sqrt(k(k+1)/(6N)), q_alpha = Q_{k,inf}^{-1}(1 − alpha)/sqrt(2)
  (Demšar's Table 5a: q_0.05 = 2.728 for k = 5).

Input is a CSV (or a list of dicts) with columns ``model,dataset,metric,seed,value``; higher is
better unless the metric is named in ``lower_is_better``. Blocks in which any model has no value
(no row, or an empty / ``NA`` / ``nan`` value cell) are dropped and reported.

CLI::

    python -m sdst.stats --scores S.csv --out R.json [--plot P.png] [--lower-is-better a,b]
                         [--block-by-seed] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats as ss

from extract.cli import exits_on_bad_input

COLUMNS = ("model", "dataset", "metric", "seed", "value")
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "none", "null", "-"})


class ScoresError(ValueError):
    """Bad scores input (the message names the file or record and what is wrong)."""


class ScoresFileNotFoundError(FileNotFoundError):
    """The scores file does not exist."""


# ----------------------------------------------------------------------------------------------
# input
# ----------------------------------------------------------------------------------------------


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


def _records(scores) -> list[tuple[str, str, str, str, float, str]]:
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


def build_matrix(rows, lower_is_better: Iterable[str] = (), block_by_seed: bool = False):
    """Rows -> (values[N, k], models, blocks, dropped, lower[N]).

    values: one row per complete block, one column per model (first-appearance order), the mean
    over seeds unless ``block_by_seed``; lower[N]: True where the block's metric is
    lower-is-better; blocks / dropped: block keys (dataset, metric[, seed]) kept / dropped.
    """
    seen: dict[tuple[str, str, str, str], str] = {}
    models: dict[str, None] = {}
    blocks: dict[tuple, None] = {}
    acc: dict[tuple, list[float]] = {}
    for model, dataset, metric, seed, value, where in rows:
        key = (model, dataset, metric, seed)
        if key in seen:
            raise ScoresError(
                f"{where}: duplicate row for model={model!r} dataset={dataset!r} metric={metric!r} "
                f"seed={seed!r} (first at {seen[key]})"
            )
        seen[key] = where
        models.setdefault(model)
        block = (dataset, metric, seed) if block_by_seed else (dataset, metric)
        blocks.setdefault(block)
        acc.setdefault((block, model), []).append(value)
    lower_is_better = {str(m) for m in lower_is_better}
    unknown = sorted(lower_is_better - {b[1] for b in blocks})
    if unknown:
        raise ScoresError(
            f"lower_is_better names metric(s) not in the scores: {', '.join(unknown)} "
            f"(metrics: {', '.join(sorted({b[1] for b in blocks}))})"
        )
    model_list = list(models)
    kept, dropped, matrix = [], [], []
    for block in blocks:
        row = []
        for model in model_list:
            vals = acc.get((block, model))
            # a model without a row, or with a missing (NaN) value for any seed, leaves a hole
            row.append(math.nan if not vals or any(math.isnan(v) for v in vals) else math.fsum(vals) / len(vals))
        (dropped if any(math.isnan(v) for v in row) else kept).append(block)
        if not any(math.isnan(v) for v in row):
            matrix.append(row)
    values = np.asarray(matrix, dtype=float).reshape(len(kept), len(model_list))
    lower = np.array([b[1] in lower_is_better for b in kept], dtype=bool)
    return values, model_list, kept, dropped, lower


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------


def block_ranks(values: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """values[N, k] -> ranks[N, k] within each block: 1 = best, ties get their average rank."""
    signed = -values if lower is None else np.where(lower[:, None], values, -values)
    return ss.rankdata(signed, method="average", axis=1)


def friedman(ranks: np.ndarray) -> dict:
    """ranks[N, k] (average ranks within blocks) -> Friedman chi2 (tie-corrected) + Iman-Davenport."""
    n, k = ranks.shape
    mean_rank = ranks.mean(axis=0)
    # Σ(t³ − t) over groups of tied models within each block
    ties = 0.0
    for row in ranks:
        _, t = np.unique(row, return_counts=True)
        ties += float(np.sum(t.astype(float) ** 3 - t))
    c = 1.0 - ties / (n * k * (k * k - 1))
    out = {"n_blocks": int(n), "k_models": int(k)}
    if c <= 1e-12:  # every block fully tied: 0/0, the test says nothing
        out.update(statistic=math.nan, pvalue=math.nan, iman_davenport_F=math.nan, iman_davenport_pvalue=math.nan,
                   note="every block is a complete tie; the Friedman statistic is undefined")
        return out
    # Demšar (2006) Eq. for chi2_F, divided by the tie correction C
    chi2 = 12.0 * n / (k * (k + 1)) * (float(np.sum(mean_rank**2)) - k * (k + 1) ** 2 / 4.0) / c
    chi2 = max(chi2, 0.0)
    p = float(ss.chi2.sf(chi2, k - 1))
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi2
    if denom <= 1e-12 * n * (k - 1):  # perfect agreement of all blocks: F is infinite
        f_stat, f_p = math.inf, 0.0
    else:
        f_stat = (n - 1) * chi2 / denom
        f_p = float(ss.f.sf(f_stat, df1, df2))
    out.update(statistic=float(chi2), pvalue=p, iman_davenport_F=float(f_stat), iman_davenport_pvalue=f_p,
               iman_davenport_df=[int(df1), int(df2)])
    return out


def nemenyi_pvalues(mean_rank: np.ndarray, n_blocks: int) -> np.ndarray:
    """mean_rank[k] -> p[k, k]: Nemenyi p-values from the studentized range distribution (df = inf)."""
    k = len(mean_rank)
    se = math.sqrt(k * (k + 1) / (6.0 * n_blocks))
    q = np.abs(mean_rank[:, None] - mean_rank[None, :]) / se
    iu = np.triu_indices(k, 1)
    p = np.ones((k, k))
    p[iu] = ss.studentized_range.sf(q[iu] * math.sqrt(2.0), k, np.inf)
    p[(iu[1], iu[0])] = p[iu]
    return np.clip(p, 0.0, 1.0)


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks (Demšar 2006, Sec. 3.2.2)."""
    q_alpha = float(ss.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q_alpha * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def cd_cliques(mean_rank: Mapping[str, float], cd: float) -> list[list[str]]:
    """Maximal groups of models whose mean ranks all differ by less than ``cd`` (best first).

    In rank order such a group is a run of consecutive models; runs contained in a longer run and
    single models are left out, as in the usual CD diagrams.
    """
    order = sorted(mean_rank, key=lambda m: (mean_rank[m], m))
    r = [mean_rank[m] for m in order]
    runs = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not (runs and runs[-1][1] >= j):
            runs.append((i, j))
    return [order[i : j + 1] for i, j in runs]


def friedman_nemenyi(
    scores: Sequence[Mapping] | str | os.PathLike,
    lower_is_better: Iterable[str] = (),
    block_by_seed: bool = False,
    alpha: float = 0.05,
) -> dict:
    """Friedman test, Nemenyi post-hoc p-values and the critical difference for a set of models.

    Args:
        scores: a CSV path, or a list of dicts, with ``model, dataset, metric, seed, value``.
        lower_is_better: metric names for which a smaller value is better.
        block_by_seed: a block is (dataset, metric, seed) instead of (dataset, metric) with the
            seeds averaged.
        alpha: significance level of the critical difference.

    Returns a JSON-friendly dict: ``friedman`` {statistic, pvalue, n_blocks, k_models,
    iman_davenport_F, iman_davenport_pvalue, iman_davenport_df}, ``mean_rank`` {model: rank}
    (best first), ``nemenyi`` {a: {b: p}}, ``critical_difference``, ``alpha``, ``cliques``
    (groups not significantly different), ``significant_pairs`` (Nemenyi p < alpha),
    ``dropped_blocks`` {count, blocks}, ``blocks_used`` (list of block keys), ``models``,
    ``lower_is_better``, ``block_by_seed``, ``block_key``. Undefined or infinite values stay
    NaN / inf here (all blocks tied: NaN; all blocks in perfect agreement: Iman-Davenport F = inf,
    p = 0) and become ``null`` in the CLI's JSON.
    """
    if isinstance(lower_is_better, str):
        lower_is_better = [m for m in lower_is_better.split(",") if m.strip()]
    lower_is_better = sorted({str(m).strip() for m in lower_is_better})
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ScoresError(f"alpha must be in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    values, models, kept, dropped, lower = build_matrix(_records(scores), lower_is_better, block_by_seed)
    k, n = len(models), len(kept)
    src = f"{scores}: " if isinstance(scores, (str, os.PathLike)) else ""
    if k < 2:
        raise ScoresError(f"{src}need at least 2 models to compare, got {k} ({', '.join(models) or 'none'})")
    if n < 2:
        raise ScoresError(
            f"{src}need at least 2 complete blocks, got {n} "
            f"({len(dropped)} block(s) dropped for missing values)"
        )

    ranks = block_ranks(values, lower)
    mean_rank = ranks.mean(axis=0)
    fr = friedman(ranks)
    p = nemenyi_pvalues(mean_rank, n)
    cd = critical_difference(k, n, alpha)

    order = sorted(range(k), key=lambda j: (mean_rank[j], models[j]))
    mr = {models[j]: float(mean_rank[j]) for j in order}
    nem = {models[i]: {models[j]: float(p[i, j]) for j in order} for i in order}
    sig = [
        [models[order[a]], models[order[b]], float(p[order[a], order[b]])]
        for a in range(k)
        for b in range(a + 1, k)
        if p[order[a], order[b]] < alpha
    ]
    return {
        "friedman": fr,
        "mean_rank": mr,
        "nemenyi": nem,
        "critical_difference": float(cd),
        "alpha": alpha,
        "cliques": cd_cliques(mr, cd),
        "significant_pairs": sig,
        "models": [models[j] for j in order],
        "blocks_used": [list(b) for b in kept],
        "dropped_blocks": {"count": len(dropped), "blocks": [list(b) for b in dropped]},
        "block_key": ["dataset", "metric", "seed"] if block_by_seed else ["dataset", "metric"],
        "block_by_seed": bool(block_by_seed),
        "lower_is_better": lower_is_better,
    }


# ----------------------------------------------------------------------------------------------
# critical-difference diagram
# ----------------------------------------------------------------------------------------------


def plot_cd_diagram(result: Mapping, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the critical-difference diagram of ``friedman_nemenyi``'s result as a PNG.

    Axis of mean ranks 1..k with the best (1) at the left; each model's name (and mean rank) is
    joined to its rank by a leader line, the better half on the left, the rest on the right, one
    row per model so names never overlap; thick bars join the groups whose mean ranks differ by
    less than CD; the CD interval is drawn above the axis.
    """
    # a bare Agg canvas: no pyplot, so the caller's backend and figure registry are left alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    try:
        mean_rank = dict(result["mean_rank"])
        cd = float(result["critical_difference"])
        alpha = float(result.get("alpha", 0.05))
        n_blocks = int(result["friedman"]["n_blocks"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"plot_cd_diagram: result lacks {exc} (pass the dict from friedman_nemenyi)") from None
    order = sorted(mean_rank, key=lambda m: (mean_rank[m], m))
    k = len(order)
    if k < 2:
        raise ValueError("plot_cd_diagram: need at least 2 models")
    cliques = [list(c) for c in result.get("cliques", cd_cliques(mean_rank, cd))]

    # ---- layout, in inches (y grows downwards) ------------------------------------------------
    fs, dpi = 10.0, 150
    labels = {m: f"{m} ({mean_rank[m]:.2f})" for m in order}
    renderer = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()

    def text_w(s: str, size: float = fs) -> float:
        return renderer.get_text_width_height_descent(s, FontProperties(size=size), ismath=False)[0] / dpi

    width_in = {m: text_w(s) for m, s in labels.items()}

    half = (k + 1) // 2
    left, right = order[:half], order[half:][::-1]  # right side: worst model on the top row
    pad = 0.15
    left_w = max(width_in[m] for m in left) + 2 * pad + 0.1
    right_w = (max(width_in[m] for m in right) if right else 0.0) + 2 * pad + 0.1
    span = max(k - 1, cd)  # the CD bar may be longer than the axis when N is small
    axis_w = max(3.5, 0.6 * (k - 1))
    scale = axis_w / (k - 1)
    x0 = left_w

    def x(r: float) -> float:
        return x0 + (r - 1.0) * scale

    row_h, clique_h = 0.27, 0.13
    y_title = 0.25 if title else 0.0
    y_cd = y_title + 0.45
    y_axis = y_cd + 0.55
    y_clique0 = y_axis + 0.25
    y_row0 = y_clique0 + len(cliques) * clique_h + 0.2
    n_rows = max(len(left), len(right))
    H = y_row0 + (n_rows - 1) * row_h + 0.3
    W = x0 + span * scale + right_w

    fig = Figure(figsize=(W, H), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")
    line = dict(color="black", lw=1.0, solid_capstyle="butt")

    if title:
        ax.text(W / 2, 0.12, title, ha="center", va="center", fontsize=fs + 1, weight="bold")

    # CD interval above the axis
    ax.plot([x(1), x(1 + cd)], [y_cd, y_cd], color="black", lw=1.5)
    for xe in (x(1), x(1 + cd)):
        ax.plot([xe, xe], [y_cd - 0.06, y_cd + 0.06], color="black", lw=1.5)
    ax.text((x(1) + x(1 + cd)) / 2, y_cd - 0.1, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=fs - 1)
    note = f"Nemenyi, α = {alpha:g}, N = {n_blocks} blocks"
    if x(1 + cd) + 0.3 + text_w(note, fs - 2) < x(k):  # room for the note right of the CD bar
        ax.text(x(k), y_cd - 0.1, note, ha="right", va="bottom", fontsize=fs - 2, color="0.35")

    # rank axis: 1 (best) at the left
    ax.plot([x(1), x(k)], [y_axis, y_axis], **line)
    for r in range(1, k + 1):
        ax.plot([x(r), x(r)], [y_axis, y_axis - 0.1], **line)
        ax.text(x(r), y_axis - 0.14, str(r), ha="center", va="bottom", fontsize=fs - 1)
    for r in np.arange(1.5, k, 1.0):
        ax.plot([x(r), x(r)], [y_axis, y_axis - 0.05], **line)

    # leader lines and names, one row per model
    for i, m in enumerate(left):
        y = y_row0 + i * row_h
        ax.plot([x(mean_rank[m]), x(mean_rank[m]), x0 - pad], [y_axis, y, y], **line)
        ax.text(x0 - pad - 0.05, y, labels[m], ha="right", va="center", fontsize=fs)
    x1 = x(k)
    for i, m in enumerate(right):
        y = y_row0 + i * row_h
        ax.plot([x(mean_rank[m]), x(mean_rank[m]), x1 + pad], [y_axis, y, y], **line)
        ax.text(x1 + pad + 0.05, y, labels[m], ha="left", va="center", fontsize=fs)

    # groups not significantly different: thick bars just below the axis
    for i, group in enumerate(cliques):
        y = y_clique0 + i * clique_h
        lo, hi = min(mean_rank[m] for m in group), max(mean_rank[m] for m in group)
        ax.plot([x(lo) - 0.05, x(hi) + 0.05], [y, y], color="black", lw=3.0, solid_capstyle="butt")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def _jsonable(obj):
    """NaN / inf -> None, so that the report is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def summary(result: Mapping) -> str:
    """A few lines for the terminal."""
    fr = result["friedman"]

    def num(v, spec):
        return "undefined" if v is None or not math.isfinite(v) else format(v, spec)

    lines = [
        f"Friedman chi2 = {num(fr['statistic'], '.3f')}, p = {num(fr['pvalue'], '.4g')} "
        f"(k = {fr['k_models']} models, N = {fr['n_blocks']} blocks); "
        f"Iman-Davenport F = {num(fr['iman_davenport_F'], '.3f')}, p = {num(fr['iman_davenport_pvalue'], '.4g')}",
        f"Nemenyi critical difference (alpha = {result['alpha']:g}): {result['critical_difference']:.3f}",
        "mean ranks: " + ", ".join(f"{m} {r:.2f}" for m, r in result["mean_rank"].items()),
    ]
    sig = result["significant_pairs"]
    lines.append(
        f"significantly different pairs (p < {result['alpha']:g}): "
        + (", ".join(f"{a} vs {b} (p = {p:.3g})" for a, b, p in sig) if sig else "none")
    )
    d = result["dropped_blocks"]
    if d["count"]:
        lines.append(f"dropped {d['count']} incomplete block(s): " + ", ".join("/".join(b) for b in d["blocks"]))
    return "\n".join(lines)


def add_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--scores", required=True, help="CSV with columns model,dataset,metric,seed,value")
    parser.add_argument("--out", required=True, help="JSON report to write")
    parser.add_argument("--plot", default=None, help="critical-difference diagram (PNG) to write")
    parser.add_argument("--lower-is-better", default="", help="comma-separated metrics where lower is better")
    parser.add_argument("--block-by-seed", action="store_true", help="a block is (dataset, metric, seed)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the CD (default 0.05)")
    return parser


@exits_on_bad_input
def run(args: argparse.Namespace) -> int:
    lower = [m.strip() for m in args.lower_is_better.split(",") if m.strip()]
    result = friedman_nemenyi(args.scores, lower_is_better=lower, block_by_seed=args.block_by_seed, alpha=args.alpha)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n")
        if args.plot:
            plot_cd_diagram(result, args.plot)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    print(f"wrote {out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdst.stats", description=__doc__.split("\n\n")[0])
    return run(add_args(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
