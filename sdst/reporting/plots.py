"""Figures a reader understands at a glance: training curves, and one query's prediction on one video.

    python -m sdst.reporting.plots examples --pred predictions_val.jsonl --gt predictions_val.jsonl.gt.jsonl \
        --clip-len 2
                                  --out ex/0.png ex/1.png ...

``examples`` draws one figure per output file from a submission (official QVHighlights format) and its ground
truth: the first query of each of the first videos (sorted by id), so the same videos every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# A window's score is a probability: sigmoid(logit), or sqrt(sigmoid(logit) * actionness) (Eq. 23) when the run
# ranks by actionness. Below 0.05 the model rates its best window under a 1-in-20 chance of being the moment (or
# gives it a product of the two under 1 in 400): it finds nothing matching the query, and the figure says so instead
# of drawing windows that look like an answer (real footage with the demo model: one window at 2e-06). Measured on the
# demo's val split (30 epochs, seeds 0 and 1): one query per seed falls below it and is a miss (IoU 0 and 0.15) while
# 94-96 % of the others hit at IoU >= 0.5; a 4-epoch demo run scores all 104 below 0.02, right or wrong.
LOW_SCORE = 0.05

# metric groups of the selection split's panels, each drawn only when it has metrics (Charades-STA and TACoS have
# no highlight detection); names of no group join the last non-empty one
GROUPS = (("moment retrieval: R1", lambda k: "R1@" in k or "mIoU" in k),
          ("moment retrieval: mAP", lambda k: "mAP" in k and k.startswith("MR")),
          ("highlight detection", lambda k: k.startswith("HL")))


def fmt_score(x: float) -> str:
    """Two significant digits at any scale: 0.83, 0.047, 2.0e-06 (never 0.000 for a small score)."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}" if x >= 1e-3 else f"{x:.1e}"


def _short(metric: str) -> str:
    return metric.replace("MR-full-", "").replace("HL-min-", "")


def _style(metric: str, i: int) -> dict:
    """Distinct lines in a panel of up to 8: HD metrics share a colour per annotator threshold (Fair/Good/VeryGood)
    with mAP solid and Hit1 dashed; MR metrics of one length range (short/middle/long) are dotted."""
    if metric.startswith("HL-min-"):
        level = metric.split("-")[2]
        colour = {"Fair": "tab:blue", "Good": "tab:orange", "VeryGood": "tab:red"}.get(level, f"C{i % 10}")
        return {"color": colour, "ls": "--" if metric.endswith("Hit1") else "-"}
    ranged = any(f"-{r}-" in metric for r in ("short", "middle", "long"))
    return {"color": f"C{i % 10}", "ls": ":" if ranged else "-"}


def _score_label(select_metrics: list[str] | None) -> str:
    """The selection score's axis label, naming the metrics it sums (full names: 'mAP' alone is ambiguous)."""
    import textwrap

    if not select_metrics:
        return "selection score (sum of the selection metrics, %)"
    formula = textwrap.wrap("= " + " + ".join(select_metrics), 40, break_on_hyphens=False)
    return "\n".join(["selection score (sum, %)"] + formula)


def _series(history: list[dict], key: str) -> list[float]:
    return [np.nan if r.get(key) is None else r[key] for r in history]


def _lines(ax, epochs, history, keys, at: int, label, style=lambda k, i: {}, legend_title: str = "") -> None:
    """One line per key, a dot on each at the selected epoch (index ``at``), the value there in the legend,
    and the legend below the axes so it never hides a line."""
    for i, k in enumerate(keys):
        y = _series(history, k)
        value = "no data" if np.isnan(y[at]) else f"{y[at]:.4g}"
        ax.plot(epochs, y, **{"lw": 1.4, "marker": "o", "ms": 4.5, "markevery": [at], "label": f"{label(k)}: {value}",
                              **style(k, i)})
    if keys:
        ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False,
                  title=legend_title, title_fontsize=8)


def curves_figure(history: list[dict], title: str = "", select_metrics: list[str] | None = None):
    """The figure of :func:`plot_curves` (returned for tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    at = max(range(len(history)), key=lambda i: history[i]["select_score"])  # first best, as train.py selects
    best = history[at]
    sel = f"at the selected epoch {best['epoch']}"
    metrics = [k[len("select_"):] for k in history[0] if k.startswith("select_") and k != "select_score"]
    groups = [[k for k in metrics if member(k)] for _, member in GROUPS]
    groups = [[k for k in g if k not in sum(groups[:i], [])] for i, g in enumerate(groups)]  # each metric once
    groups = [(label, g) for (label, _), g in zip(GROUPS, groups) if g]
    rest = [k for k in metrics if not any(k in g for _, g in groups)]
    if rest:
        groups = groups[:-1] + [(groups[-1][0], groups[-1][1] + rest)] if groups else [("other metrics", rest)]
    fig, axes = plt.subplots(2, 3, figsize=(17, 10.5), layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[3 + len(groups):]:  # no highlight detection (Charades-STA, TACoS): no empty panel
        ax.remove()

    ax = flat[0]
    losses = ["train_loss"] + [k for k in history[0] if k.startswith("train_") and k != "train_loss"]
    _lines(ax, epochs, history, losses, at, lambda k: "total" if k == "train_loss" else k[len("train_"):],
           lambda k, i: {"color": "black", "lw": 2.2} if k == "train_loss" else {"color": f"C{(i - 1) % 10}"},
           f"loss {sel}")
    ax.set(ylabel="training loss per iteration (weighted by λ, log scale)", title="training losses", yscale="log")

    ax = flat[1]
    ax.plot(epochs, [r["select_score"] for r in history], color="tab:red", lw=2)
    ax.plot([best["epoch"]], [best["select_score"]], "o", color="tab:red", ms=7)
    ax.set(ylabel=_score_label(select_metrics), title="selection score (picks the checkpoint)")
    ax.text(0.03, 0.95, f"selected: epoch {best['epoch']}, score {best['select_score']:.2f}", transform=ax.transAxes,
            va="top", fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    lr = ax.twinx()
    lr.plot(epochs, [r["lr"] for r in history], color="tab:blue", lw=1, alpha=0.6)
    lr.set_ylabel("learning rate at the epoch's last iteration (blue)", color="tab:blue")
    lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))

    ax = flat[2]
    _lines(ax, epochs, history, ["it_per_s"], at, lambda k: "iterations / s", lambda k, i: {"color": "tab:green"}, sel)
    ax.set(ylabel="training speed (iterations / s)", title="throughput")

    for ax, (label, keys) in zip(flat[3:], groups):
        label += " and mIoU" if label.endswith("R1") and any("mIoU" in k for k in keys) else ""  # not a recall
        _lines(ax, epochs, history, [f"select_{k}" for k in keys], at, lambda k: _short(k[len("select_"):]),
               lambda k, i: _style(k[len("select_"):], i), f"% {sel}")
        ax.set(ylabel=f"{label} (%)", title=f"selection split: {label}")
    for ax in flat[:3 + len(groups)]:
        ax.axvline(best["epoch"], color="grey", ls="--", lw=1)  # the selected epoch, on every panel
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{title} (dashed line and dots: selected epoch {best['epoch']})" if title else
                 f"dashed line and dots: selected epoch {best['epoch']}")
    return fig


def plot_curves(history: list[dict], path: str | Path, title: str = "", select_metrics: list[str] | None = None):
    """Losses, throughput, the selection split's metrics and score per epoch, as a PNG beside the run's log."""
    import matplotlib.pyplot as plt

    if not history:
        return
    fig = curves_figure(history, title, select_metrics)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _window_label(wax, rank: int, s: float, e: float, text: str, duration: float) -> None:
    """The label of a window bar beside it, on the side with room (a window near the end put it off the axes)."""
    pad = duration * 0.006
    if e <= 0.72 * duration:
        wax.text(e + pad, rank, text, va="center", fontsize=8)
    elif s >= 0.28 * duration:
        wax.text(s - pad, rank, text, va="center", ha="right", fontsize=8)
    else:  # the window spans most of the video: on the bar
        wax.text(s + pad, rank, text, va="center", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})


def prediction_figure(query: str, title: str, duration: float, clip_len: float, saliency, windows, top: int = 5,
                      gt_windows=(), thumbnails=(), aspect: float = 1.0, gt_saliency=None):
    """Saliency per clip over time, the top windows as bars with their scores, the ground truth (windows shaded on
    both panels, per-clip annotator mean on a right axis) when known, thumbnails when given; a visible note when the
    best score is below :data:`LOW_SCORE`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = list(windows)[:top]
    n_thumbs = len(thumbnails)
    rows = [2.2, 0.25 * max(len(windows), 1) + 0.45] + ([1.7] if n_thumbs else [])
    fig = plt.figure(figsize=(12, 2.2 + sum(rows)))
    grid = fig.add_gridspec(len(rows), max(n_thumbs, 1), height_ratios=rows)
    ax = fig.add_subplot(grid[0, :])
    wax = fig.add_subplot(grid[1, :], sharex=ax)
    for a in (ax, wax):
        for i, (s, e) in enumerate(gt_windows):
            a.axvspan(s, e, color="tab:green", alpha=0.18, lw=0, label="ground-truth window" if i == 0 else None)
    centres = (np.arange(len(saliency)) + 0.5) * clip_len
    ax.plot(centres, saliency, color="black", lw=1.5, marker="o", ms=3, label="predicted saliency")
    if windows:
        ax.axvspan(windows[0][0], windows[0][1], ymax=0.12, color="tab:orange", alpha=0.8, lw=0, label="best window")
    handles = []
    if gt_saliency is not None and np.isfinite(np.asarray(gt_saliency, dtype=float)).any():
        gax = ax.twinx()  # another scale: annotators' 0-4 ratings, not the model's score
        handles = gax.plot((np.arange(len(gt_saliency)) + 0.5) * clip_len, gt_saliency, color="tab:green", ls="none",
                           marker="s", ms=4, label="ground-truth saliency")
        gax.set_ylabel("ground-truth saliency\n(annotator mean, 0\u20134)", color="tab:green")
        gax.set_ylim(-0.2, 4.2)
    handles = ax.get_legend_handles_labels()[0] + handles
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8,
              frameon=False)  # above the axes: inside, it hid the curve
    ax.set(xlim=(0, duration), ylabel="predicted saliency per clip\n(higher: more relevant)")
    fig.suptitle(f"\u201c{query}\u201d \u2014 {title}")
    for rank, (s, e, score) in enumerate(windows):
        wax.barh(rank, e - s, left=s, height=0.6, color="tab:orange" if rank == 0 else "tab:grey",
                 alpha=1.0 if rank == 0 else 0.6)
        _window_label(wax, rank, s, e, f"#{rank + 1}  {s:.1f}\u2013{e:.1f} s  (score {fmt_score(score)})", duration)
    wax.set(ylim=(max(len(windows), 1) - 0.5, -0.5), yticks=[], xlabel="time in the video (s)",
            ylabel=f"top {len(windows)}\nwindows")
    best = windows[0][2] if windows else 0.0
    if best < LOW_SCORE:  # the saliency curve is a separate output, scored per clip: the note is about windows
        fig.text(0.5, 0.005, f"Best window score {fmt_score(best)} < {LOW_SCORE}: the model finds no moment matching "
                 "this query; the windows shown are not meaningful.", ha="center", va="bottom", fontsize=10,
                 color="darkred", weight="bold")
    for i, img in enumerate(thumbnails):
        tax = fig.add_subplot(grid[2, i])
        tax.imshow(img, aspect=1.0 / aspect)
        s, e, _ = windows[i]
        tax.set_title(f"#{i + 1}: {s:.1f}\u2013{e:.1f} s", fontsize=9)
        tax.axis("off")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def gt_clip_saliency(gt: dict, n_clips: int) -> np.ndarray:
    """Per clip, the mean of the annotators' 0-4 ratings (``saliency_scores`` of ``relevant_clip_ids``); NaN for
    clips nobody rated (QVHighlights rates only the relevant clips) and for a line without ratings."""
    out = np.full(n_clips, np.nan)
    for cid, scores in zip(gt.get("relevant_clip_ids") or [], gt.get("saliency_scores") or []):
        if 0 <= cid < n_clips:
            out[cid] = float(np.mean(scores))
    return out


def submission_figure(pred: dict, gt: dict | None, clip_len: float):
    """The figure of :func:`plot_submission` (returned for tests)."""
    saliency = pred.get("pred_saliency_scores") or []
    windows = pred.get("pred_relevant_windows") or []
    duration = float(gt["duration"]) if gt else max([len(saliency) * clip_len] + [w[1] for w in windows])
    n_clips = max(len(saliency), int(np.ceil(duration / clip_len)))
    return prediction_figure(pred.get("query", ""), f"{pred['vid']} (qid {pred['qid']})", duration, clip_len,
                             saliency, windows, gt_windows=(gt or {}).get("relevant_windows", []),
                             gt_saliency=gt_clip_saliency(gt, n_clips) if gt else None)


def plot_submission(pred: dict, gt: dict | None, path: str | Path, clip_len: float) -> None:
    """One line of a submission (official QVHighlights format) and of its ground truth, when given, as a PNG:
    saliency over time, the top windows with their scores, the ground-truth windows and ratings; no thumbnails."""
    import matplotlib.pyplot as plt

    fig = submission_figure(pred, gt, clip_len)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pick_examples(preds: list[dict], n: int) -> list[dict]:
    """The first query of each of the first ``n`` videos, by video id (the same ones every run)."""
    first: dict[str, dict] = {}
    for p in preds:
        first.setdefault(p["vid"], p)
    return [first[v] for v in sorted(first)[:n]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.reporting.plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("examples", help="one-video figures from a submission and its ground truth")
    ex.add_argument("--pred", required=True, help="submission (JSON lines)")
    ex.add_argument("--gt", default=None, help="its ground truth (JSON lines)")
    ex.add_argument("--clip-len", type=float, required=True, help="seconds per saliency score")
    ex.add_argument("--out", nargs="+", required=True, help="one PNG per example")
    args = p.parse_args(argv)
    from sdst.evaluate import load_jsonl  # validated as the evaluator reads them: errors name the file and line

    preds = pick_examples(load_jsonl(args.pred, kind="submission"), len(args.out))
    gts = {str(g["qid"]): g for g in load_jsonl(args.gt, kind="gt")} if args.gt else {}
    if len(preds) < len(args.out):
        print(f"error: {args.pred}: {len(preds)} videos, {len(args.out)} figures asked for", file=sys.stderr)
        return 2
    for pred, out in zip(preds, args.out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        plot_submission(pred, gts.get(str(pred["qid"])), out, args.clip_len)
        print(f"{out}: qid {pred['qid']} on {pred['vid']}, best window score "
              f"{fmt_score(pred['pred_relevant_windows'][0][2]) if pred['pred_relevant_windows'] else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
