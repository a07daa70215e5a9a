"""Moment retrieval at every refinement level of one SDST-family checkpoint: does each step improve the moments?

    python -m sdst.levels --checkpoint results/<ds>/<model>/seed<k>/checkpoint_best.pt --split val --out DIR
                          [--features cache/<ds>/<hash>/summary.json] [--cache-dir cache] [--device cpu]

Level ℓ's moments are the class logits and spans its decoder output predicts (the outputs the auxiliary losses
of Eq. 13 train; the last level is the model's). Every level is ranked by the class probability p alone: the
actionness head reads only the last level's spans, so Eq. 23's sqrt(p · actionness) exists for the last level
only, and ``output`` gives it (the checkpoint's own predictions, as ``python -m sdst.infer`` writes them). Where
the paper's Fig. 3 compares models with K = 1..4 steps, this reads the K levels of one trained model (issue 21
point 5). Beside the metrics, each row gives the best-window R1@0.7: the share of queries for which one of the
windows the level submits (its decoder queries' windows, up to sdst.postprocess.TOP_K) reaches IoU ≥ 0.7 with a
ground-truth window, i.e. the R1@0.7 a perfect ranking of those windows would give; the gap to R1@0.7 is what the
ranking loses, the rest what the localisation does. ``DIR/levels.json`` holds the metrics; the split needs ground
truth.
Each row also counts the distinct windows submitted per query (sdst.metrics.distinct_windows: near-copies at IoU ≥
0.7 count once). ``slots`` in the JSON reads the model's M decoder queries one by one (issue 21 point 5): how often
each one's window is ranked first, how often it reaches IoU ≥ 0.7 with a ground-truth window, and its learned
reference R^0 (centre, width in [0, 1] of the video; the "mixed" and "pure" query selections move the centre), and
how long its windows are (10th / 50th / 90th percentile, s).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from extract.cli import exits_on_bad_input

SHOWN = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-short-mAP", "MR-middle-mAP", "MR-long-mAP")
BEST = "best-window R1@0.7"  # the column of sdst.metrics.best_window_recall
DISTINCT = "distinct windows"  # the column of sdst.metrics.distinct_windows


def level_records(model, dataset, clip_len: float, batch_size: int = 64, device: str = "cpu",
                  sigma: float = 0.5, use_actionness: bool = True,
                  slots: list | None = None) -> tuple[list[list[dict]], list[dict]]:
    """-> (records of every level ranked by p, in level order; the model's output records as sdst.infer ranks
    them). One forward pass per batch, float32, eval mode. ``slots``, where given, receives per query its qid, the
    windows (M, 2) in seconds of the M decoder queries in their order and the scores the output ranks them by."""
    import torch

    from sdst.data import batch_to, collate
    from sdst.postprocess import ranking_scores, span_windows, timeline, to_records

    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    per_level: list[list[dict]] | None = None
    output: list[dict] = []
    with torch.no_grad():
        for batch in loader:
            batch = batch_to(batch, device)
            out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
            levels = [*out["aux_outputs"], {"pred_logits": out["pred_logits"], "pred_spans": out["pred_spans"]}]
            per_level = per_level or [[] for _ in levels]
            for records, lvl in zip(per_level, levels):
                records += to_records({**lvl, "saliency": out["saliency"]}, batch["meta"], clip_len, sigma=sigma,
                                      use_actionness=False)
            output += to_records(out, batch["meta"], clip_len, sigma=sigma, use_actionness=use_actionness)
            if slots is not None:
                scores, spans = ranking_scores(out, use_actionness), out["pred_spans"].float().cpu().numpy()
                slots += [{"qid": m["qid"], "windows": span_windows(spans[i], *timeline(m, clip_len)),
                           "scores": scores[i]} for i, m in enumerate(batch["meta"])]
    return per_level or [], output


def run(checkpoint: str, split: str, out: str | Path, features: str | None = None, cache_dir: str = "cache",
        device: str = "cpu", batch_size: int = 64) -> dict:
    from extract.devices import resolve_device
    from sdst.config import ranks_by_actionness
    from sdst.data import query_record
    from sdst.diagnose import checkpoint_split
    from sdst.evaluate import evaluate
    from sdst.metrics import best_window_recall, distinct_windows

    model, run_cfg, ds = checkpoint_split(checkpoint, split, features, cache_dir, require_labels=True)
    if run_cfg["model"]["arch"] != "sdst":
        raise ValueError(f"{checkpoint}: arch {run_cfg['model']['arch']!r} has no refinement levels "
                         "(python -m sdst.levels reads SDST-family checkpoints)")
    data, train = run_cfg["data"], run_cfg["train"]
    slots: list[dict] = []
    per_level, output = level_records(model, ds, data["clip_len"], batch_size, resolve_device(device),
                                      train["nms_sigma"], ranks_by_actionness(train), slots)
    gt = [query_record(q) for q in ds.items]
    brief = lambda records: evaluate(records, gt, data["eval_type"])["brief"]  # noqa: E731
    result = {"checkpoint": str(checkpoint), "model": run_cfg["model"].get("name"), "dataset": data["name"],
              "split": split, "seed": run_cfg.get("seed"), "queries": len(ds),
              "levels": [{"level": i + 1, "cache_layer": layer, "ranked_by": "p", "metrics": brief(records),
                          BEST: best_window_recall(records, gt), DISTINCT: distinct_windows(records)}
                         for i, (layer, records) in enumerate(zip(model.levels, per_level))],
              "output": {"ranked_by": "sqrt(p * actionness)" if ranks_by_actionness(train) else "p",
                         "metrics": brief(output), BEST: best_window_recall(output, gt),
                         DISTINCT: distinct_windows(output)},
              "slots": slot_stats(slots, gt, model.r0.detach().sigmoid().tolist())}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levels.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def slot_stats(slots: list[dict], gt: list[dict], references: list, threshold: float = 0.7) -> list[dict]:
    """Per decoder query (in the model's order): the percent of queries whose first-ranked window is its window
    (``first``: the highest-scoring non-empty window, ties to the lower index), the percent where its window reaches
    IoU ≥ ``threshold`` with a ground-truth window (``hit``), its learned reference R^0 (centre, width) and the 10th,
    50th and 90th percentiles of its windows' lengths in seconds (``length_s``, non-empty windows; None if it has
    none): whether some decoder query predicts the short moments."""
    import numpy as np

    from sdst.metrics import temporal_iou

    windows = {g["qid"]: np.asarray(g["relevant_windows"], dtype=float).reshape(-1, 2) for g in gt}
    first, hit = np.zeros(len(references)), np.zeros(len(references))
    lengths: list[list[float]] = [[] for _ in references]
    for s in slots:
        w = np.asarray(s["windows"], dtype=float)
        valid = w[:, 1] > w[:, 0]  # an empty window is never submitted (sdst.postprocess.to_records)
        if valid.any():
            first[int(np.argmax(np.where(valid, s["scores"], -np.inf)))] += 1
        hit += (temporal_iou(w, windows[s["qid"]]) >= threshold).any(1)
        for i in np.flatnonzero(valid):
            lengths[i].append(float(w[i, 1] - w[i, 0]))
    n = max(len(slots), 1)
    spread = lambda x: [round(float(v), 2) for v in np.percentile(x, (10, 50, 90))] if x else None  # noqa: E731
    return [{"query": i, "first": round(100.0 * f / n, 2), "hit": round(100.0 * h / n, 2),
             "reference": [round(float(x), 4) for x in ref], "length_s": spread(lengths[i])}
            for i, (f, h, ref) in enumerate(zip(first, hit, references))]


def slots_table(result: dict) -> str:
    """The decoder queries as a Markdown table (what the CLI prints after the levels)."""
    rows = ["| decoder query | R^0 centre, width | ranked first (%) | IoU ≥ 0.7 (%) | length p10 / p50 / p90 (s) |",
            "|---:|---|---:|---:|---|"]
    rows += [f"| {s['query']} | {s['reference'][0]:.2f}, {s['reference'][1]:.2f} | {s['first']:.2f} | "
             f"{s['hit']:.2f} | {' / '.join(f'{v:.1f}' for v in s['length_s']) if s.get('length_s') else '–'} |"
             for s in result.get("slots", [])]
    return "\n".join(rows)


def _cell(value) -> str:
    return "–" if value is None else f"{value:.2f}"  # a length range without windows has no value


def table(result: dict) -> str:
    """The levels as a Markdown table (what the CLI prints)."""
    rows = [f"| level (cached layer) | {' | '.join(SHOWN)} | {BEST} | {DISTINCT} |",
            "|---|" + "---:|" * (len(SHOWN) + 2)]
    for lvl in result["levels"]:
        rows.append(f"| {lvl['level']} ({lvl['cache_layer']}) | "
                    + " | ".join(_cell(lvl["metrics"][k]) for k in SHOWN)
                    + f" | {_cell(lvl.get(BEST))} | {_cell(lvl.get(DISTINCT))} |")
    rows.append(f"| output, ranked by {result['output']['ranked_by']} | "
                + " | ".join(_cell(result["output"]["metrics"][k]) for k in SHOWN)
                + f" | {_cell(result['output'].get(BEST))} | {_cell(result['output'].get(DISTINCT))} |")
    return "\n".join(rows)


def report_section(json_paths: list[str]) -> str:
    """Markdown for the significance report: per SDST-family model its levels table, mean ± std over the seeds
    given (one levels.json per seed), and how the model's output compares with its last level ranked by p alone
    (Eq. 23's actionness ranking against none), seed by seed."""
    from sdst.reporting.over_seeds import by_model, cell, mean_std, seeds_text

    if not json_paths:
        return ""
    lines = ["## Moment retrieval per refinement level", "",
             "What each refinement level of each seed's best checkpoint predicts on the headline split "
             "(sdst.levels), mean ± std over seeds: every level ranked by the class probability p, the last row the "
             f"model's output as evaluated. {BEST}: the share of queries where one of the windows submitted reaches "
             "IoU ≥ 0.7 with a ground-truth window (R1@0.7 under a perfect ranking of those windows). "
             f"{DISTINCT}: how many of the windows submitted per query are distinct (a window within IoU 0.7 of one "
             "listed before it counts once).", ""]
    for _, results in by_model(json_paths):
        first = results[0]
        lines += [f"### {first['model']} on {first['dataset']} ({seeds_text(results)}, {first['queries']} queries)",
                  "", f"| level (cached layer) | {' | '.join(SHOWN)} | {BEST} | {DISTINCT} |",
                  "|---|" + "---:|" * (len(SHOWN) + 2)]
        for i, lvl in enumerate(first["levels"]):
            lines.append(f"| {lvl['level']} ({lvl['cache_layer']}) | " + " | ".join(
                cell([r["levels"][i]["metrics"][k] for r in results]) for k in SHOWN)
                + f" | {cell([r['levels'][i].get(BEST) for r in results])} | "
                + f"{cell([r['levels'][i].get(DISTINCT) for r in results])} |")
        lines.append(f"| output, ranked by {first['output']['ranked_by']} | " + " | ".join(
            cell([r["output"]["metrics"][k] for r in results]) for k in SHOWN)
            + f" | {cell([r['output'].get(BEST) for r in results])} | "
            + f"{cell([r['output'].get(DISTINCT) for r in results])} |")
        if first["output"]["ranked_by"] != "p":
            parts = []
            for k in ("MR-full-R1@0.7", "MR-full-mAP", "MR-long-mAP"):
                diffs = [None if r["output"]["metrics"][k] is None or r["levels"][-1]["metrics"][k] is None
                         else r["output"]["metrics"][k] - r["levels"][-1]["metrics"][k] for r in results]
                mean, _ = mean_std(diffs)
                if mean is not None:
                    parts.append(f"{k} {cell(diffs, '+.2f')} (higher in {sum(d > 0 for d in diffs)} of "
                                 f"{len(diffs)} seeds)")
            if parts:
                lines += ["", f"Output − level {first['levels'][-1]['level']} ranked by p: " + "; ".join(parts) + "."]
        lines.append("")
    return "\n".join(lines)


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    from sdst.diagnose import checkpoint_parser

    p = checkpoint_parser("python -m sdst.levels", __doc__, "checkpoint of an SDST-family model (arch sdst)",
                          "folder for levels.json")
    args = p.parse_args(argv)
    result = run(args.checkpoint, args.split, args.out, args.features, args.cache_dir, args.device, args.batch_size)
    print(f"{result['model']} on {result['dataset']} {result['split']} ({result['queries']} queries):")
    print(table(result))
    print(f"\nThe {len(result['slots'])} decoder queries (output ranking):")
    print(slots_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
