"""bench/comparison.py: the targets of one seed of every model of a significance report, and the weight-free
records of the finished runs whose every piece is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

from conftest import ROOT
from sdst.archive import listing, record


def comparison(cwd, *args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "comparison.py"), *args], cwd=cwd,
                          capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_targets_of_a_seed_are_what_the_report_reads_of_its_runs(demo_workflow):
    """The demo's report compares sdst, sdst_defca (deformable CA: offsets too), actionformer and r2tuning (no
    levels, no offsets); its reported split is val."""
    proj, work = demo_workflow
    said = comparison(work, "targets", "--report", "results/demo/significance", "--seeds", "1").stdout.split()
    run = "results/demo/{}/seed1/"
    assert said == [run.format("sdst") + "metrics_val.json", run.format("sdst") + "diagnose/levels.json",
                    run.format("sdst") + "diagnose/offsets.png",
                    run.format("sdst_defca") + "metrics_val.json", run.format("sdst_defca") + "diagnose/levels.json",
                    run.format("sdst_defca") + "diagnose/offsets.png",
                    run.format("actionformer") + "metrics_val.json", run.format("r2tuning") + "metrics_val.json",
                    "results/demo/random_baseline/metrics.json"]


def test_only_finished_runs_with_every_piece_are_recorded_once(demo_workflow, tmp_path):
    """The demo's two SDST runs have their predictions and seed 0 its offsets (rule all makes the first seed's), but
    neither has levels.json: both are left for later; once seed 0 has it, seed 0 alone is recorded, with each piece
    and the sketch of its features, and a second call records nothing again."""
    proj, work = demo_workflow
    here = tmp_path / "here"
    here.mkdir()
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    (here / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (here / "cache").symlink_to(work / "cache")
    (here / "resources").symlink_to(work / "resources")
    for seed in (0, 1):
        shutil.copytree(work / f"results/demo/sdst/seed{seed}", here / f"results/demo/sdst/seed{seed}")
    args = ("record", "--report", "results/demo/significance", "--to", str(tmp_path / "records"))

    said = comparison(here, *args).stdout
    assert said == ("results/demo/sdst/seed0: left for later (no levels)\n"
                    "results/demo/sdst/seed1: left for later (no levels, offsets)\n"  # the figure is seed 0's only
                    "0 run(s) recorded now, 2 left for later\n")

    (here / "results/demo/sdst/seed0/diagnose/levels.json").write_text('{"levels": []}\n')
    said = comparison(here, *args).stdout
    assert said.endswith("1 run(s) recorded now, 1 left for later\n"), said
    entry = tmp_path / "records" / "demo" / "sdst" / "seed0"
    assert sorted(record(entry)["pieces"]) == ["levels", "offsets", "predictions_val", "train"]
    assert (entry / "features.json").is_file()
    assert listing(tmp_path / "records") == [f"demo sdst seed0: outputs, {record(entry)['epochs_trained']} epochs, "
                                             f"best {record(entry)['best_epoch']}, "
                                             f"features {record(entry)['identity']['features']}"]
    assert comparison(here, *args).stdout.endswith("0 run(s) recorded now, 1 left for later\n")
