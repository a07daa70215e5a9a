"""Does a run fit the short moments of its own training queries? (issue 21 point 5; README "demo_hard")

    .venv/bin/python bench/fit_by_length.py results/demo_hard/{sdst,r2tuning}/seed0 \\
        --features cache/demo_hard/<hash>/summary.json [--split val] [--max-clips 5]

For each run, predicts the queries it was trained on (its train split without the held-out selection queries,
sdst.data.split_queries, with ``checkpoint_best.pt``; ``python -m sdst.infer`` underneath) and reads its
``predictions_<split>.jsonl``. Prints per ground-truth length in clips (sdst.reporting.by_clips), on both:
- found: the percent of windows one of the query's submitted windows reaches at IoU >= 0.7;
- saliency first: the percent whose best clip outscores every clip outside the query's ground truth;
- for SDST-family runs, found at each refinement level on the training queries (sdst.levels.level_records: each
  level's windows, from the outputs its auxiliary losses train), and how the width of the decoder query closest to
  each moment (its last-level window overlapping the moment most) goes from its reference R^0 through the levels;
  and the query the Hungarian matcher assigns each moment at the last level (what its loss trains): its width,
  its IoU with the moment, whether it is that closest query, the rank of its score, its centre error, how often it
  misses the moment entirely (no IoU gradient there), and its mean IoU against the mean IoU it would have with the
  moment's own width about the same centre (the IoU loss prefers the wider window where the first is higher); and
  the same queries split by whether their centre is within half a clip of the moment's (with how often the dense
  stream's saliency puts those moments first).
A length a run misses on its training queries too is one it does not fit (not one it fails to generalise to);
where its saliency has the moment and its windows miss it, the loss is in how the windows are predicted.
Run from the workflow's root (the run's annotation paths are relative to it). Inference only: a few seconds per
run on one core for demo_hard.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
from pathlib import Path

import numpy as np

from sdst.checkpoint import model_from_checkpoint
from sdst.config import ranks_by_actionness
from sdst.data import FeatureDataset, cache_info, query_record, split_queries
from sdst.evaluate import load_jsonl
from sdst.infer import predict_records
from sdst.levels import level_records
from sdst.reporting.by_clips import first_by_window, found_by_clips, saliency_first


def fitted(run: Path, features: str, device: str) -> dict:
    """What the run does on the queries it was fitted on: its records and their ground truth, the records of each
    refinement level and the width trajectories (SDST family; empty for the others), and the clip length."""
    model, run_cfg, _ = model_from_checkpoint(run / "checkpoint_best.pt")
    data, train = run_cfg["data"], run_cfg["train"]
    info = cache_info(features)
    ds = FeatureDataset(split_queries(data)["train"], info.store, data["clip_len"], data["saliency"], min_clips=0,
                        failed=info.failed, failed_queries=info.failed_queries)
    args = (model, ds, data["clip_len"], train["eval_batch_size"], device, train["nms_sigma"])
    out = {"gt": [query_record(q) for q in ds.items], "clip_len": float(data["clip_len"]), "levels": [],
           "widths": {}, "matched": {}}
    if run_cfg["model"]["arch"] == "sdst":
        out["levels"], out["records"] = level_records(*args, use_actionness=ranks_by_actionness(train))
        out["widths"], out["matched"] = width_trajectories(model, ds, train["eval_batch_size"], device,
                                                           train.get("matcher", {}))
    else:
        out["records"] = predict_records(*args, train["amp"], use_actionness=ranks_by_actionness(train))
    return out


def width_trajectories(model, ds, batch_size: int, device: str, matcher: dict) -> tuple[dict, dict]:
    """Per ground-truth length in clips, one row per window of that length:
    - widths: [R^0, level 1, ..., level K], the width in clips of the decoder query whose last-level window overlaps
      the window most, at every step;
    - matched: [width in clips, IoU, 1 if it is that closest query, rank of its score among the M queries (1:
      highest), centre error in clips, the IoU it would have with the moment's width about its own centre, 1 if
      the dense stream's saliency puts the moment first (sdst.reporting.by_clips.first_by_window)] of the
      query the Hungarian matcher assigns the window at the last level, with the run's matcher costs
      (sdst.matcher; the assignment the last level's loss trains). The centre error and that IoU tell whether a wide
      window is what the IoU loss (Eq. 19, a mean of 1 - IoU) prefers given where the query's centre is."""
    import torch

    from sdst.config import MatcherConfig
    from sdst.data import batch_to, collate
    from sdst.matcher import hungarian_match
    from sdst.model.spans import span_cw_to_se, temporal_iou

    rows: dict[int, list[list[float]]] = {}
    matched: dict[int, list[list[float]]] = {}
    model = model.to(device).eval()
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate):
            batch = batch_to(batch, device)
            out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
            widths = torch.stack([model.r0.sigmoid()[:, 1].expand_as(out["pred_spans"][..., 1]),
                                  *(lvl["pred_spans"][..., 1] for lvl in out["aux_outputs"]),
                                  out["pred_spans"][..., 1]], -1)  # (B, M, K + 1)
            pairs = hungarian_match(out["pred_logits"], out["pred_spans"], batch["spans"], MatcherConfig(**matcher))
            ranks = out["pred_logits"].argsort(1, descending=True).argsort(1) + 1  # (B, M)
            for i, (truth, meta) in enumerate(zip(batch["spans"], batch["meta"])):
                iou = temporal_iou(span_cw_to_se(truth), span_cw_to_se(out["pred_spans"][i]))  # (G, M)
                first = first_by_window(out["saliency"][i, :meta["n_clips"]].cpu().numpy(),
                                        (span_cw_to_se(truth) * meta["n_clips"]).cpu().numpy(), 1.0)  # in clips
                closest = iou.argmax(1)
                for width, q in zip(truth[:, 1].tolist(), closest.tolist()):
                    rows.setdefault(round(width * meta["n_clips"]), []).append(
                        (widths[i, q] * meta["n_clips"]).tolist())
                for q, g in zip(*(t.tolist() for t in pairs[i])):
                    pred = out["pred_spans"][i, q]
                    narrowed = torch.stack([pred[0], truth[g, 1]]).unsqueeze(0)  # its centre, the moment's width
                    matched.setdefault(round(truth[g, 1].item() * meta["n_clips"]), []).append(
                        [widths[i, q, -1].item() * meta["n_clips"], iou[g, q].item(), float(q == closest[g].item()),
                         float(ranks[i, q]), abs(pred[0] - truth[g, 0]).item() * meta["n_clips"],
                         temporal_iou(span_cw_to_se(truth[g:g + 1]), span_cw_to_se(narrowed)).item(),
                         float(first[g])])
    return rows, matched


def row(name: str, table: dict[int, tuple[float, int]], max_clips: int) -> str:
    cells = [f"{table[n][0]:.1f} ({table[n][1]})" if n in table else "" for n in range(1, max_clips + 1)]
    return f"| {name} | " + " | ".join(cells) + " |"


def _by_centre(m: np.ndarray) -> str:
    """Matched rows (width_trajectories' ``matched``) as 'windows | median width (clips) | mean IoU | saliency
    first (%)'."""
    return (f"{len(m)} | {np.median(m[:, 0]):.2f} | {m[:, 1].mean():.3f} | {100 * m[:, 6].mean():.1f}" if len(m)
            else "0 | - | - | -")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders holding checkpoint_best.pt and predictions_<split>.jsonl")
    p.add_argument("--features", required=True, help="extraction summary.json of the dataset's cache")
    p.add_argument("--split", default="val")
    p.add_argument("--max-clips", type=int, default=5, help="longest ground-truth length shown, in clips")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    head = " | ".join(f"{n} clip{'s' if n > 1 else ''}" for n in range(1, args.max_clips + 1))
    found, first, by_level, widths, matched, located = [], [], [], [], [], []
    for run in map(Path, args.runs):
        fit = fitted(run, args.features, args.device)
        records, gt, levels, clip_len = fit["records"], fit["gt"], fit["levels"], fit["clip_len"]
        pred = run / f"predictions_{args.split}.jsonl"
        shown = {"train (fitted)": (records, gt), args.split: (load_jsonl(pred, "submission"),
                                                                 load_jsonl(f"{pred}.gt.jsonl", "gt"))}
        for part, (rec, truth) in shown.items():
            found.append(row(f"{run} {part}", found_by_clips(rec, truth, clip_len), args.max_clips))
            first.append(row(f"{run} {part}", saliency_first(rec, truth, clip_len), args.max_clips))
        by_level += [row(f"{run} level {i + 1}", found_by_clips(level, gt, clip_len), args.max_clips)
                     for i, level in enumerate(levels)]
        widths += [f"| {run} | {n} | {len(w)} | " + " / ".join(f"{x:.2f}" for x in np.median(w, 0)) + " |"
                   for n, w in sorted(fit["widths"].items()) if n <= args.max_clips]
        for n, m in sorted(fit["matched"].items()):
            if n <= args.max_clips:
                m = np.asarray(m)
                matched.append(f"| {run} | {n} | {len(m)} | {np.median(m[:, 0]):.2f} | {np.median(m[:, 1]):.2f} | "
                               f"{100 * m[:, 2].mean():.1f} | {np.median(m[:, 3]):.0f} | {np.median(m[:, 4]):.2f} | "
                               f"{100 * (m[:, 1] == 0).mean():.1f} | {m[:, 1].mean():.3f} | {m[:, 5].mean():.3f} |")
                near = m[:, 4] < 0.5
                located.append(f"| {run} | {n} | {_by_centre(m[near])} | {_by_centre(m[~near])} |")
    tables = {"found at IoU 0.7, % (windows)": found, "saliency first, % (windows)": first,
              "found at IoU 0.7 by refinement level (SDST family), train (fitted), % (windows)": by_level}
    for title, rows in tables.items():
        if rows:
            print(f"\n{title}\n\n| run | {head} |\n|---|" + "---:|" * args.max_clips)
            print("\n".join(rows))
    if widths:
        print("\nwidth in clips of the decoder query closest to each moment, train (fitted), median\n\n"
              "| run | moment (clips) | windows | R^0 / level 1 / ... / level K |\n|---|---:|---:|---|")
        print("\n".join(widths))
    if matched:
        print("\nthe decoder query the matcher assigns each moment at the last level, train (fitted), median\n\n"
              "| run | moment (clips) | windows | its width (clips) | its IoU | it is the closest query (%) | "
              "its score rank | its centre error (clips) | no overlap (%) | mean IoU | mean IoU at the moment's "
              "width, same centre |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(matched))
        print("\nthe same queries by where their centre is: within half a clip of the moment's, or farther\n\n"
              "| run | moment (clips) | within: windows | its width (clips) | mean IoU | saliency first (%) | "
              "farther: windows | its width (clips) | mean IoU | saliency first (%) |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(located))
    return 0


if __name__ == "__main__":
    _sys.exit(main())
