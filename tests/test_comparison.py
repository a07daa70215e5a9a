"""bench/comparison.py: the targets of one seed of every model of a significance report, and the weight-free
records of the finished runs whose every piece is there."""

from __future__ import annotations

import json
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


def test_the_interim_overlay_names_the_seeds_whose_every_run_is_recorded(tmp_path):
    """demo_hard's report has 16 models: seeds 0 and 2 have a record of each, seed 1 lacks one, seeds 3 and 4 have
    none. The overlay asks for seeds 0 and 2 with min_seeds 2; on config.yaml, as Snakemake merges a second config
    file (recursively), it passes the schema and leaves every run as it was (its record still stands for it)."""
    from snakemake.utils import update_config

    from sdst.config import dataset_seeds, load_config, resolve_run

    config = load_config(ROOT / "config.yaml")
    report = "results/demo_hard/significance"
    models = config["significance"]["reports"][report]["models"]
    for seed, kept in ((0, models), (1, models[1:]), (2, models)):
        for model in kept:
            (tmp_path / "demo_hard" / model / f"seed{seed}").mkdir(parents=True)
            (tmp_path / "demo_hard" / model / f"seed{seed}" / "run.json").write_text("{}")
    said = yaml.safe_load(comparison(ROOT, "interim", "--config", str(ROOT / "config.yaml"),
                                     "--to", str(tmp_path)).stdout)
    assert said == {"train": {"datasets": {"demo_hard": {"seeds": [0, 2]}}},
                    "significance": {"reports": {report: {"min_seeds": 2}}}}

    merged = yaml.safe_load((ROOT / "config.yaml").read_text())
    update_config(merged, said)
    (tmp_path / "merged.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    interim = load_config(tmp_path / "merged.yaml")
    assert dataset_seeds(interim, "demo_hard") == [0, 2]
    assert all(resolve_run(interim, "demo_hard", m, 2) == resolve_run(config, "demo_hard", m, 2) for m in models)

    shutil.rmtree(tmp_path / "demo_hard" / models[0] / "seed0")
    shutil.rmtree(tmp_path / "demo_hard" / models[0] / "seed2")
    failed = subprocess.run([sys.executable, str(ROOT / "bench" / "comparison.py"), "interim", "--config",
                             str(ROOT / "config.yaml"), "--to", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert failed.returncode != 0 and "no seed has a record of every run" in failed.stderr, failed.stderr


def test_the_readme_table_rows_follow_the_mean_ranks_with_each_metric_over_seeds(tmp_path):
    """bench/readme_table.py: one row per model in mean-rank order, mean ± std (ddof = 1) of each headline metric
    over the seeds, the length ranges as means; --readme replaces only the block between the markers."""
    report = tmp_path / "significance" / "report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({"mean_rank": {"slow": 2.5, "fast": 1.25}}))
    names = ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-short-mAP", "MR-middle-mAP", "MR-long-mAP",
             "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1", "MR-best-window-R1@0.7"]
    for model, base in (("slow", 10.0), ("fast", 40.0)):
        split = {name: {"values": [base + i, base + i + 2, base + i + 4]} for i, name in enumerate(names)}
        (tmp_path / model).mkdir()
        (tmp_path / model / "metrics.json").write_text(json.dumps(
            {"model": model, "dataset": "d", "headline_split": "val", "splits": {"val": split}}))
    script = [sys.executable, str(ROOT / "bench" / "readme_table.py"), "--report", str(report)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = subprocess.run(script, capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    # values base+i, base+i+2, base+i+4: mean base+i+2, std 2
    assert rows[2:] == [
        "| `fast` | 1.25 | 42.00 ± 2.00 | 43.00 ± 2.00 | 44.00 ± 2.00 | 45.00 / 46.00 / 47.00 | 48.00 ± 2.00 | "
        "49.00 ± 2.00 | 50.00 ± 2.00 |",
        "| `slow` | 2.50 | 12.00 ± 2.00 | 13.00 ± 2.00 | 14.00 ± 2.00 | 15.00 / 16.00 / 17.00 | 18.00 ± 2.00 | "
        "19.00 ± 2.00 | 20.00 ± 2.00 |"]
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- interim-table -->\n| old |\n<!-- /interim-table -->\nafter\n")
    subprocess.run([*script, "--readme", str(readme)], check=True, env=env)
    assert readme.read_text() == ("before\n<!-- interim-table -->\n" + "\n".join(rows) + "\n"
                                  "<!-- /interim-table -->\nafter\n")
