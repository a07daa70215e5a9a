"""The critical-difference diagram (Demšar 2006, Fig. 1) of a Friedman/Nemenyi result (sdst.reporting.stats).

Axis of mean ranks 1..k with the best (1) at the left; each model's name (and mean rank) is joined to its rank
by a leader line, the better half on the left, the rest on the right, one row per model so names never overlap;
thick bars join the groups whose mean ranks differ by less than CD; the CD interval is drawn above the axis.
Drawn on a bare Agg canvas (no pyplot), so the caller's backend and figure registry are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_SIZE, DPI = 10.0, 150
PAD = 0.15  # inches between the axis ends and the names
ROW_H, CLIQUE_H = 0.27, 0.13  # inches per name row and per clique bar
LINE = dict(color="black", lw=1.0, solid_capstyle="butt")


@dataclass(frozen=True)
class Layout:
    """Positions in inches, y growing downwards."""

    k: int
    x0: float  # x of rank 1
    scale: float  # inches per rank
    width: float
    height: float
    y_cd: float
    y_axis: float
    y_clique0: float
    y_row0: float

    def x(self, rank: float) -> float:
        return self.x0 + (rank - 1.0) * self.scale


def _text_width(renderer, text: str, size: float = FONT_SIZE) -> float:
    from matplotlib.font_manager import FontProperties

    return renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)[0] / DPI


def _read(result: Mapping) -> tuple[dict, float, float, int, list]:
    try:
        return (dict(result["mean_rank"]), float(result["critical_difference"]), float(result.get("alpha", 0.05)),
                int(result["friedman"]["n_blocks"]), [list(c) for c in result["cliques"]])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"plot_cd_diagram: result lacks {exc} (pass the dict from friedman_nemenyi)") from None


def _layout(left: list, right: list, labels: dict, cd: float, n_cliques: int, title: bool, renderer) -> Layout:
    k = len(left) + len(right)
    width_in = {m: _text_width(renderer, s) for m, s in labels.items()}
    left_w = max(width_in[m] for m in left) + 2 * PAD + 0.1
    right_w = (max(width_in[m] for m in right) if right else 0.0) + 2 * PAD + 0.1
    span = max(k - 1, cd)  # the CD bar may be longer than the axis when N is small
    scale = max(3.5, 0.6 * (k - 1)) / (k - 1)
    y_cd = (0.25 if title else 0.0) + 0.45
    y_axis = y_cd + 0.55
    y_clique0 = y_axis + 0.25
    y_row0 = y_clique0 + n_cliques * CLIQUE_H + 0.2
    height = y_row0 + (max(len(left), len(right)) - 1) * ROW_H + 0.3
    return Layout(k, left_w, scale, left_w + span * scale + right_w, height, y_cd, y_axis, y_clique0, y_row0)


def _draw_cd_interval(ax, lay: Layout, cd: float, alpha: float, n_blocks: int, renderer) -> None:
    x, y = lay.x, lay.y_cd
    ax.plot([x(1), x(1 + cd)], [y, y], color="black", lw=1.5)
    for xe in (x(1), x(1 + cd)):
        ax.plot([xe, xe], [y - 0.06, y + 0.06], color="black", lw=1.5)
    ax.text((x(1) + x(1 + cd)) / 2, y - 0.1, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=FONT_SIZE - 1)
    note = f"Nemenyi, α = {alpha:g}, N = {n_blocks} blocks"
    if x(1 + cd) + 0.3 + _text_width(renderer, note, FONT_SIZE - 2) < x(lay.k):  # room right of the CD bar
        ax.text(x(lay.k), y - 0.1, note, ha="right", va="bottom", fontsize=FONT_SIZE - 2, color="0.35")


def _draw_axis(ax, lay: Layout) -> None:
    x, y, k = lay.x, lay.y_axis, lay.k
    ax.plot([x(1), x(k)], [y, y], **LINE)
    for r in range(1, k + 1):
        ax.plot([x(r), x(r)], [y, y - 0.1], **LINE)
        ax.text(x(r), y - 0.14, str(r), ha="center", va="bottom", fontsize=FONT_SIZE - 1)
    for r in np.arange(1.5, k, 1.0):
        ax.plot([x(r), x(r)], [y, y - 0.05], **LINE)


def _draw_names(ax, lay: Layout, left: list, right: list, mean_rank: dict, labels: dict) -> None:
    x = lay.x
    for i, m in enumerate(left):
        y = lay.y_row0 + i * ROW_H
        ax.plot([x(mean_rank[m]), x(mean_rank[m]), lay.x0 - PAD], [lay.y_axis, y, y], **LINE)
        ax.text(lay.x0 - PAD - 0.05, y, labels[m], ha="right", va="center", fontsize=FONT_SIZE)
    x1 = x(lay.k)
    for i, m in enumerate(right):
        y = lay.y_row0 + i * ROW_H
        ax.plot([x(mean_rank[m]), x(mean_rank[m]), x1 + PAD], [lay.y_axis, y, y], **LINE)
        ax.text(x1 + PAD + 0.05, y, labels[m], ha="left", va="center", fontsize=FONT_SIZE)


def plot_cd_diagram(result: Mapping, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw the critical-difference diagram of ``friedman_nemenyi``'s result as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mean_rank, cd, alpha, n_blocks, cliques = _read(result)
    order = sorted(mean_rank, key=lambda m: (mean_rank[m], m))
    if len(order) < 2:
        raise ValueError("plot_cd_diagram: need at least 2 models")
    labels = {m: f"{m} ({mean_rank[m]:.2f})" for m in order}
    half = (len(order) + 1) // 2
    left, right = order[:half], order[half:][::-1]  # right side: worst model on the top row
    renderer = FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()
    lay = _layout(left, right, labels, cd, len(cliques), bool(title), renderer)

    fig = Figure(figsize=(lay.width, lay.height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    if title:
        ax.text(lay.width / 2, 0.12, title, ha="center", va="center", fontsize=FONT_SIZE + 1, weight="bold")
    _draw_cd_interval(ax, lay, cd, alpha, n_blocks, renderer)
    _draw_axis(ax, lay)
    _draw_names(ax, lay, left, right, mean_rank, labels)
    for i, group in enumerate(cliques):  # groups not significantly different: thick bars below the axis
        y = lay.y_clique0 + i * CLIQUE_H
        lo, hi = min(mean_rank[m] for m in group), max(mean_rank[m] for m in group)
        ax.plot([lay.x(lo) - 0.05, lay.x(hi) + 0.05], [y, y], color="black", lw=3.0, solid_capstyle="butt")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path
