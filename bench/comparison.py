"""A comparison over many runs, one seed of every model at a time, kept in git as it goes (issue 21; README
"demo_hard" and "Configuration and re-runs"). For a significance report of config.yaml (default demo_hard's):

    snakemake --cores 2 --keep-going $(python bench/comparison.py targets --seeds 0)
    python bench/comparison.py record            # then: git add bench/records && git commit
    python bench/comparison.py interim > interim.yaml   # the report so far:
    snakemake --cores 2 results/demo_hard/significance/report.md --configfile config.yaml interim.yaml

``targets`` prints what the report reads of each run of the given seeds (every seed by default): its metrics on
each reported split and, for an SDST-family model, its levels and offsets diagnostics (sdst.variants), and the
random baseline. ``record`` keeps each finished run whose every such piece is there as a weight-free record
(sdst.archive save --outputs, with the sketch of the features it was trained on), so that on the next machine the
same snakemake command restores it (rules restore_record_*) and trains only the runs not recorded. A run still
training, or one without all its pieces, is left for later and said so. ``interim`` prints an overlay on config.yaml
for the report over the seeds whose every run is recorded (their seeds, and the report's ``min_seeds`` lowered to
their number): the report so far, every run restored from its record, nothing trained.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import json
from pathlib import Path

from sdst.archive import RECORD, finished, piece, record, save
from sdst.config import dataset_seeds, load_config, resolve_run
from sdst.variants import has_levels, has_offsets


def report_seeds(config: dict, folder: str) -> list[int]:
    """Every seed of the report's datasets."""
    return sorted({s for d in config["significance"]["reports"][folder]["datasets"] for s in dataset_seeds(config, d)})


def runs(config: dict, folder: str, seeds: list[int] | None = None):
    """(dataset, model, seed, run folder, the pieces the report reads of it) of every run of the report."""
    spec = config["significance"]["reports"][folder]
    for seed in seeds if seeds is not None else report_seeds(config, folder):
        for ds in spec["datasets"]:
            if seed not in dataset_seeds(config, ds):
                continue
            splits = config["datasets"][ds]["splits"]["report"]
            for model in spec["models"]:
                m = resolve_run(config, ds, model, seed)["model"]
                pieces = ["train", *(f"predictions_{s}" for s in splits)]
                pieces += ["levels"] * has_levels(m) + ["offsets"] * has_offsets(m)
                yield ds, model, seed, Path("results", ds, model, f"seed{seed}"), pieces


def targets(config: dict, folder: str, seeds: list[int] | None) -> list[str]:
    out = []
    for ds, model, seed, run_dir, pieces in runs(config, folder, seeds):
        out += [str(run_dir / f"metrics_{p.removeprefix('predictions_')}.json") for p in pieces
                if p.startswith("predictions_")]
        out += [str(run_dir / "diagnose" / f) for p, f in (("levels", "levels.json"), ("offsets", "offsets.png"))
                if p in pieces]
    datasets = config["significance"]["reports"][folder]["datasets"]
    return out + [f"results/{ds}/random_baseline/metrics.json" for ds in datasets]


def summary_of(config: dict, ds: str, digest: str) -> Path | None:
    """The extraction summary of the features a run was trained on (its digest), among the dataset's caches."""
    for path in sorted(Path(config["extract"]["cache_dir"], ds).glob("*/summary.json")):
        if json.loads(path.read_text()).get("features_digest") == digest:
            return path
    return None


def record_runs(config: dict, folder: str, to: Path) -> int:
    from sdst.checkpoint import load_checkpoint

    kept = left = 0
    for ds, model, seed, run_dir, pieces in runs(config, folder):
        if not (run_dir / "checkpoint_last.pt").is_file():
            continue
        entry = to / ds / model / f"seed{seed}"
        state = load_checkpoint(run_dir / "checkpoint_last.pt")
        missing = [p for p in pieces if not all((run_dir / f).is_file() for f in piece(p)[1])]
        why = "still training" if not finished(run_dir, state) else f"no {', '.join(missing)}" if missing else None
        if why:
            print(f"{run_dir}: left for later ({why})")
            left += 1
            continue
        kept_before = record(entry) if (entry / RECORD).is_file() else None
        if kept_before and kept_before["identity"]["features"] == state.get("features") \
                and kept_before["epochs_trained"] == len(state["history"]):
            continue  # recorded already
        features = summary_of(config, ds, state.get("features"))
        if features is None:
            print(f"{run_dir}: left for later (no extraction summary under {config['extract']['cache_dir']}/{ds} "
                  f"has the features digest it was trained on, {state.get('features')})")
            left += 1
            continue
        save(run_dir, to, outputs=True, features=features)
        print(f"{run_dir} -> {entry}")
        kept += 1
    print(f"{kept} run(s) recorded now, {left} left for later")
    return 0


def interim(config: dict, folder: str, records: Path) -> str:
    """The config overlay for the report over the seeds whose every run has a record in ``records``."""
    import yaml

    spec = config["significance"]["reports"][folder]
    whole = [s for s in report_seeds(config, folder) if all((records / ds / model / f"seed{s}" / RECORD).is_file()
                                     for ds, model, *_ in runs(config, folder, [s]))]
    if not whole:
        raise SystemExit(f"{records}: no seed has a record of every run of {folder}")
    return yaml.safe_dump({"train": {"datasets": {ds: {"seeds": whole} for ds in spec["datasets"]}},
                           "significance": {"reports": {folder: {"min_seeds": len(whole)}}}}, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("targets", "record", "interim"))
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--report", default="results/demo_hard/significance", help="a key of significance.reports")
    p.add_argument("--seeds", type=int, nargs="+", help="targets: these seeds only (default: every seed)")
    p.add_argument("--to", type=Path, default=None,
                   help="record, interim: the records folder (default: config run_records)")
    args = p.parse_args(argv)
    config = load_config(args.config)
    if args.report not in config["significance"]["reports"]:
        p.error(f"--report {args.report}: not one of config.yaml's significance.reports "
                f"({', '.join(config['significance']['reports'])})")
    if args.command == "targets":
        print("\n".join(targets(config, args.report, args.seeds)))
        return 0
    records = args.to or Path(config["run_records"])
    if args.command == "interim":
        print(interim(config, args.report, records), end="")
        return 0
    return record_runs(config, args.report, records)


if __name__ == "__main__":
    _sys.exit(main())
