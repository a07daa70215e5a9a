"""A floor to compare against: random windows and random saliency, scored by the same evaluator.

``python -m sdst.baseline --gt G --out P [--seed 0] [--clip-len 2]`` writes a submission with 10 windows
per query (uniform start, uniform length, random scores) and one uniform random saliency per clip.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from extract.annotations import load_annotations
from sdst.infer import write_jsonl


def random_predictions(gt_path: str, seed: int = 0, clip_len: float = 2.0, windows: int = 10) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for q in load_annotations(gt_path):
        d = q.duration
        starts = rng.uniform(0, d, windows)
        ends = np.minimum(starts + rng.uniform(clip_len, max(d / 2, clip_len * 1.01), windows), d)
        scores = np.sort(rng.uniform(0, 1, windows))[::-1]
        out.append({"qid": q.qid, "query": q.query, "vid": q.vid,
                    "pred_relevant_windows": [[round(float(s), 2), round(float(e), 2), round(float(c), 4)]
                                              for s, e, c in zip(starts, ends, scores)],
                    "pred_saliency_scores": [round(float(x), 4) for x in rng.uniform(0, 1, max(1, int(d // clip_len)))]})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdst.baseline", description=__doc__)
    p.add_argument("--gt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-len", type=float, default=2.0)
    args = p.parse_args(argv)
    write_jsonl(args.out, random_predictions(args.gt, args.seed, args.clip_len))
    return 0


if __name__ == "__main__":
    sys.exit(main())
