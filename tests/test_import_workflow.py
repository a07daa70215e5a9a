"""The workflow on imported features (issue 22): a dataset entry with `features: {import: sdst, ...}` trains and
evaluates SDST with no backbone and no extraction job; a changed feature file is re-imported and re-trains; a model
reading more levels than the store holds is refused in one line. A folder of 10 videos in the SDST release's
layout, written here (conftest.write_release), 1 seed, 2 epochs: the tiny demo's budget."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import yaml

from conftest import ROOT, snakemake, write_release

TARGETS = ("results/rel/metrics.json", "results/rel/summary.md")


def ran(proc) -> Counter:
    return Counter(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", proc.stdout + proc.stderr, flags=re.M))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("import_workflow")
    rel = write_release(work / "release")
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["datasets"] = {"rel": {
        "annotations": {s: f"release/{s}.jsonl" for s in rel["annotations"]},
        "features": {"import": "sdst", "videos": "release/vid_feats", "queries": "release/txt_feats"},
        "backbone": "tiny", "clip_len": 2.0, "saliency": "qvh", "paper": "qvh",
        "splits": {"train": "train", "select": "sel", "report": ["val"]}}}
    cfg["model"]["datasets"] = {"rel": {"num_queries": 5, "hidden_dim": 32}}
    cfg["model"]["variants"]["sdst_k6"] = {"arch": "sdst", "levels": [-6, -5, -4, -3, -2, -1]}
    cfg["train"].update(seeds=[0], datasets={"rel": {"epochs": 2, "batch_size": 4, "lr": 5e-4, "warmup_iters": 5}})
    cfg["evaluate"] = {"datasets": ["rel"], "models": ["sdst"], "examples": 1}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    first = ran(snakemake(ROOT, work, "--cores", "2", *TARGETS))
    return work, first


def test_imported_features_train_and_evaluate_end_to_end(work):
    work, first = work
    assert first["import_features"] == 1 and first["train"] == 1 and first["evaluate_run"] == 1, first
    assert not {"extract_shard", "demo_data_rel"} & set(first)  # no backbone, no decoding
    metrics = json.loads((work / "results/rel/metrics.json").read_text())
    assert metrics["seeds"] == [0] and "MR-full-mAP" in metrics["metrics"]
    extraction = json.loads((work / "results/rel/extraction.json").read_text())
    assert extraction["identity"]["import"] == "sdst" and extraction["videos"]["total"] == 10
    assert extraction["failed_videos"] == [] and extraction["failed_queries"] == []
    summary = (work / "results/rel/summary.md").read_text()
    # the paper's Tab. 1 val numbers beside the run's, labelled, with both selection protocols named
    assert "| paper (Tab. 1) | val | 73.68 | 60.90 | 73.52 | 57.42 | 55.60 | 44.00 | 72.00 |" in summary
    assert "| run − paper | val |" in summary and "model selection in the paper: not stated in the paper" in summary
    assert "model selection in this run: the best epoch on sel (not a reported split)" in summary
    assert "imported sdst files, no extraction ran" in (work / "results/rel/extraction.md").read_text()


def test_a_changed_feature_file_is_reimported_and_retrains(work):
    work, _ = work
    path = work / "release/vid_feats/train03.npz"
    x = np.load(path)["visual_feats_interm_pooled"]
    np.savez(path, visual_feats_interm_pooled=(x * 1.5).astype(np.float16))
    jobs = ran(snakemake(ROOT, work, "--cores", "2", *TARGETS))
    assert jobs["import_features"] == 1 and jobs["train"] == 1 and jobs["predict"] == 1, jobs
    cache = next((work / "cache/rel").iterdir())
    report = json.loads((cache / "import.json").read_text())
    assert report["videos"]["extracted"] == 1 and [c["item"] for c in report["changed"]] == ["video 'train03'"]
    assert "Nothing to be done" in snakemake(ROOT, work, "-n", "--cores", "2", *TARGETS).stdout


def test_more_levels_than_the_store_holds_is_one_line_before_any_job(work):
    work, _ = work
    proc = snakemake(ROOT, work, "-n", "--cores", "2", "results/rel/sdst_k6/seed0/checkpoint_best.pt", check=False)
    assert proc.returncode == 2
    line = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert ("model sdst_k6 reads levels [-6, -5, -4, -3, -2, -1] and needs 6 video and 6 text layers; dataset rel's "
            "store (imported [-5, -4, -3, -2, -1]) holds 5 and 5") in line


def test_one_video_prediction_refuses_a_model_trained_on_imported_features(work):
    from sdst.predict import Predictor

    work, _ = work
    with pytest.raises(ValueError, match="trained on imported features \\(sdst files, no backbone"):
        Predictor(str(work / "results/rel/sdst/seed0/checkpoint_best.pt"), device="cpu")
