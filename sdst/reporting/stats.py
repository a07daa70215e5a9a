"""Significance statistics: Friedman test, Nemenyi post-hoc test, critical difference (the diagram: cd_diagram.py).

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

    python -m sdst.reporting.stats --scores S.csv --out R.json [--plot P.png] [--lower-is-better a,b]
                         [--block-by-seed] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats as ss

from extract.cli import exits_on_bad_input
from sdst.reporting.scores import ScoresError, read_rows



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
    values, models, kept, dropped, lower = build_matrix(read_rows(scores), lower_is_better, block_by_seed)
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
            from sdst.reporting.cd_diagram import plot_cd_diagram

            plot_cd_diagram(result, args.plot)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    print(f"wrote {out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdst.reporting.stats", description=__doc__.split("\n\n")[0])
    return run(add_args(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
