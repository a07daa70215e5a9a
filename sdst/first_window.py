"""Where the first-ranked window lands (issue 21 point 5). R1@0.7 counts the queries whose first window reaches
IoU ≥ 0.7 with a ground-truth window; this sorts every query by what its first window is, so that a model's miss
can be told apart: a loose boundary, a piece of the moment, several windows merged into one, or somewhere else.

On a generated ``events`` dataset (demo_hard; extract.demo_plans regenerates what each video shows) "somewhere
else" is split further by the events the window overlaps, first match wins: the asked object's asked change at a
time the query excludes (a composed query's relation ignored), the same kind of change on another object (the
object confused), another change of the asked object (the change confused), another event, no event. R1@0.7 is
also given per query kind (simple, while, after, before) and per asked change (colour, grow, shrink, flash, vanish).

Shares of queries in percent, 2 dp; the categories of one level sum to 100 up to rounding. The significance
report tabulates them over seeds (sdst.reporting.ranking, from the aggregated metrics.json); for one submission:

    python -m sdst.first_window --predictions results/demo_hard/sdst/seed0/predictions_val.jsonl \
        [--gt P.gt.jsonl] [--dataset demo_hard [--config config.yaml]] [--out shares.json]

``--gt`` defaults to the run's ``<predictions>.gt.jsonl``; ``--dataset`` names a generated events dataset of the
config whose plans tell the events (any other dataset: the five categories only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from extract.cli import exits_on_bad_input

from extract.demo_shapes import CLIP
from sdst.metrics import temporal_iou

# first window -> category, in this order (IoU as the official evaluator computes it, sdst.metrics.temporal_iou)
CATEGORIES = {
    "hit": "IoU ≥ 0.7 with a ground-truth window (R1@0.7)",
    "loose": "0.5 ≤ IoU < 0.7",
    "partial": "IoU < 0.5, overlaps one ground-truth window",
    "merged": "IoU < 0.5, overlaps two or more ground-truth windows",
    "elsewhere": "overlaps no ground-truth window",
}
ELSEWHERE = {  # "elsewhere" on a generated events dataset, by the events the window overlaps
    "asked change, excluded time": "the asked object's asked change, at a time the query's relation excludes",
    "same change, other object": "the asked kind of change on another object",
    "other change, same object": "another change of the asked object",
    "other event": "another object's other change",
    "no event": "no event",
}
PREFIX = "MR-first-window-"
# R1@0.7 per group of queries on a generated events dataset: group -> (key prefix, the group of a query's plan)
GROUPS = {"query kind": ("MR-R1@0.7-query-", lambda q: q["kind"]),
          "asked change": ("MR-R1@0.7-change-", lambda q: q["target"][1])}


def _overlaps(a, b) -> bool:
    return min(a[1], b[1]) > max(a[0], b[0])


def classify(window, gt_windows) -> str:
    """The CATEGORIES key of one first window [s, e] (seconds) against a query's ground-truth windows."""
    best = float(temporal_iou(np.asarray([window], dtype=float), np.asarray(gt_windows, dtype=float)).max())
    if best >= 0.7:
        return "hit"
    if best >= 0.5:
        return "loose"
    n = sum(_overlaps(window, g) for g in gt_windows)
    return "merged" if n >= 2 else "partial" if n == 1 else "elsewhere"


def classify_elsewhere(window, plan: dict, query: dict) -> str:
    """The ELSEWHERE key of a window that overlaps none of the query's windows, from the video's plan."""
    obj, etype, param = query["target"]
    hit = [(i, ev) for i, o in enumerate(plan["objects"]) for ev in o["events"]
           if _overlaps(window, [ev["clips"][0] * CLIP, ev["clips"][1] * CLIP])]
    if any(i == obj and ev["type"] == etype and ev["param"] == param for i, ev in hit):
        return "asked change, excluded time"
    if any(i != obj and ev["type"] == etype for i, ev in hit):
        return "same change, other object"
    if any(i == obj for i, _ in hit):
        return "other change, same object"
    return "other event" if hit else "no event"


def breakdown(records: list[dict], gt: list[dict], plans: dict | None = None) -> dict[str, float]:
    """``PREFIX + category`` -> percent of the ``gt`` queries, and with ``plans`` (qid -> (video plan, query
    plan), extract.demo_plans.query_plans) ``PREFIX + ELSEWHERE key`` and, for each of GROUPS, its prefix + the
    group's value (R1@0.7 of those queries). A query without predictions counts as elsewhere (no event)."""
    first = {r["qid"]: r["pred_relevant_windows"][0][:2] for r in records if r["pred_relevant_windows"]}
    keys = list(CATEGORIES) + (list(ELSEWHERE) if plans is not None else [])
    counts = dict.fromkeys(keys, 0)
    groups: dict[str, list[int]] = {}
    for g in gt:
        w = first.get(g["qid"])
        cat = "elsewhere" if w is None else classify(w, g["relevant_windows"])
        counts[cat] += 1
        if plans is not None:
            plan, q = plans[g["qid"]]
            if cat == "elsewhere":
                counts["no event" if w is None else classify_elsewhere(w, plan, q)] += 1
            for prefix, of in GROUPS.values():
                groups.setdefault(prefix + str(of(q)), [0, 0])[cat == "hit"] += 1
    out = {PREFIX + k: round(100.0 * v / len(gt), 2) for k, v in counts.items()}
    out.update({k: round(100.0 * hits / (hits + misses), 2) for k, (misses, hits) in sorted(groups.items())})
    return out


def group_sizes(gt: list[dict], plans: dict) -> dict[str, dict[str, int]]:
    """Queries per group value, for each of GROUPS: {"query kind": {"simple": n, ...}, "asked change": {...}}."""
    out: dict[str, dict[str, int]] = {}
    for name, (_, of) in GROUPS.items():
        sizes: dict[str, int] = {}
        for g in gt:
            value = str(of(plans[g["qid"]][1]))
            sizes[value] = sizes.get(value, 0) + 1
        out[name] = dict(sorted(sizes.items()))
    return out


def demo_spec(config: str | Path, dataset: str) -> dict | None:
    """The generator's spec of ``dataset`` in a config file, None when the dataset is not generated."""
    import yaml

    datasets = yaml.safe_load(Path(config).read_text()).get("datasets") or {}
    if dataset not in datasets:
        raise ValueError(f"{config}: no dataset '{dataset}' (datasets: {', '.join(datasets)})")
    return datasets[dataset].get("generate")


def plans_for(spec: dict | None, gt: list[dict], source: str) -> dict | None:
    """qid -> (video plan, query plan) for the ``gt`` rows of a generated events dataset, else None."""
    if not spec or spec.get("kind") != "events":
        return None
    from extract.demo import DemoSpec
    from extract.demo_plans import all_query_plans, query_plans

    return query_plans(all_query_plans(DemoSpec.from_config(spec)), gt, source)


@exits_on_bad_input
def main(argv: list[str] | None = None) -> int:
    from sdst.evaluate import load_jsonl  # validated: a bad line is named with its file and number

    p = argparse.ArgumentParser(prog="python -m sdst.first_window", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", required=True, help="a submission (qid, pred_relevant_windows ranked)")
    p.add_argument("--gt", help="its ground truth (default: <predictions>.gt.jsonl, as sdst.infer writes it)")
    p.add_argument("--dataset", help="the config's dataset; a generated events one splits 'elsewhere' by events")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--out", help="write the shares as JSON")
    args = p.parse_args(argv)
    gt_path = args.gt or args.predictions + ".gt.jsonl"
    records, gt = load_jsonl(args.predictions, "submission"), load_jsonl(gt_path, "gt")
    plans = plans_for(demo_spec(args.config, args.dataset) if args.dataset else None, gt, gt_path)
    shares = breakdown(records, gt, plans)
    if args.out:
        Path(args.out).write_text(json.dumps(shares, indent=2) + "\n")
    sizes = group_sizes(gt, plans) if plans else {}
    print(f"{args.predictions}: {len(gt)} queries, their first window (% of queries)")
    for key, value in shares.items():
        label = key.removeprefix(PREFIX)
        for name, (prefix, _) in GROUPS.items():
            if key.startswith(prefix):
                group = key.removeprefix(prefix)
                label = f"R1@0.7, {name} {group} ({sizes[name][group]} queries)"
        indent = "    " if label in ELSEWHERE else "  "
        print(f"{indent}{label:<{48 - len(indent)}s} {value:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
