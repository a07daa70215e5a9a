"""Benchmark of the significance report (sdst.reporting.stats): Friedman + Nemenyi + CD on a synthetic CSV.

The target is <= 1 s for 20 models x 100 blocks (25 datasets x 4 metrics) x 3 seeds, reading the
CSV included, the plot and interpreter start-up excluded.

    python bench/stats.py [--models 20] [--blocks 100] [--seeds 3] [--repeat 5] [--plot out.png]
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sdst.reporting.cd_diagram import plot_cd_diagram
from sdst.reporting.stats import friedman_nemenyi


def write_scores(path: Path, n_models: int, n_blocks: int, n_seeds: int, seed: int = 0) -> Path:
    """A CSV where model j has a skill j/n_models plus noise, so the ranks are partly consistent."""
    rng = np.random.default_rng(seed)
    metrics = ["R1@0.5", "R1@0.7", "mAP", "mIoU"]
    skill = np.linspace(0.0, 1.0, n_models)
    lines = ["model,dataset,metric,seed,value"]
    for b in range(n_blocks):
        dataset, metric = f"dataset{b // len(metrics)}", metrics[b % len(metrics)]
        for s in range(n_seeds):
            vals = 50 + 10 * skill + rng.normal(scale=8.0, size=n_models)
            lines += [f"model{j:02d},{dataset},{metric},{s},{v:.2f}" for j, v in enumerate(vals)]
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--plot", default=None, help="also draw the CD diagram here (not timed)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        scores = write_scores(Path(tmp) / "scores.csv", args.models, args.blocks, args.seeds)
        friedman_nemenyi(scores)  # warm-up: lazy scipy imports
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = friedman_nemenyi(scores)
            times.append(time.perf_counter() - t0)
    assert result["friedman"]["n_blocks"] == args.blocks and result["friedman"]["k_models"] == args.models
    best = min(times)
    print(
        f"stats {args.models} models x {args.blocks} blocks x {args.seeds} seeds: {best:.3f} s "
        f"(best of {args.repeat}; Friedman p = {result['friedman']['pvalue']:.3g}, CD = {result['critical_difference']:.2f})"
    )
    if args.plot:
        print(f"CD diagram: {plot_cd_diagram(result, args.plot)}")
    return 0 if best <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
