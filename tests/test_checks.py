"""Checks before any job starts: each bad input gets a clear message naming the file (and line) or keys."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REAL_VIDEOS, ROOT
from extract.checks import DatasetCheckError, check_dataset


def _dataset(tmp_path, rows=None, n_videos=1, **extra):
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    for i in range(n_videos):
        shutil.copy(REAL_VIDEOS[0], videos / f"v{i}.mp4")
    rows = rows or [{"qid": i, "query": "a query", "duration": 5.0, "vid": f"v{i}", "relevant_windows": [[0, 2]]}
                    for i in range(n_videos)]
    ann = tmp_path / "train.jsonl"
    ann.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    ds = {"annotations": {"train": str(ann)}, "videos": str(videos), "backbone": "tiny", "checkpoint": None,
          "clip_len": 2.0, "saliency": "window", "splits": {"train": "train", "select": {"holdout": 0.2},
                                                              "report": ["train"]}}
    ds.update(extra)
    return ds


def test_good_dataset_passes(tmp_path):
    assert check_dataset("ok", _dataset(tmp_path, n_videos=2)) == {"videos": 2, "missing_videos": []}


def test_demo_spec_that_cannot_place_its_windows_is_an_error_before_the_job(tmp_path):
    # 8 s = 4 clips cannot hold 3 windows with a clip of gap around each (the generator looped forever)
    ds = {"annotations": {}, "videos": str(tmp_path / "v"), "backbone": "tiny", "checkpoint": None,
          "generate": {"seed": 0, "videos": {"train": 2}, "min_duration": 8, "max_duration": 10}}
    with pytest.raises(DatasetCheckError, match=r"datasets\.d\.generate: demo: min_duration 8 s .* needs 7 clips"):
        check_dataset("d", ds, generated=True)
    ds["generate"]["min_duration"] = 14
    assert check_dataset("d", ds, generated=True)["videos"] == 0


def test_malformed_annotation_names_file_line_and_field(tmp_path):
    rows = [{"qid": 0, "query": "q", "duration": 5.0, "vid": "v0", "relevant_windows": [[0, 2]]},
            {"qid": 1, "query": "q", "vid": "v0", "relevant_windows": [[0, 2]]}]
    with pytest.raises(DatasetCheckError, match=r"train\.jsonl:2: missing field 'duration'"):
        check_dataset("d", _dataset(tmp_path, rows=rows))
    ds = _dataset(tmp_path)
    ds["annotations"]["val"] = str(tmp_path / "absent.jsonl")
    with pytest.raises(DatasetCheckError, match=r"annotations \(val\): .*absent\.jsonl: annotation file not found"):
        check_dataset("d", ds)


def test_saliency_clip_past_the_evaluators_count_is_caught_before_any_job(tmp_path):
    """sdst.evaluate counts int(duration / 2) saliency clips and rejects a GT clip id past them, inside a job."""
    rows = [{"qid": 0, "query": "q", "duration": 5.0, "vid": "v0", "relevant_windows": [[0, 2]],
             "relevant_clip_ids": [0, 2], "saliency_scores": [[1, 2, 3], [2, 2, 2]]}]
    with pytest.raises(DatasetCheckError, match=r"train\.jsonl:1: relevant_clip_ids\[1\] = 2 is not a clip"):
        check_dataset("d", _dataset(tmp_path, rows=rows, saliency="qvh"))


def test_missing_videos_are_counted_and_named_unless_allowed(tmp_path):
    rows = [{"qid": i, "query": "q", "duration": 5.0, "vid": f"v{i}", "relevant_windows": [[0, 2]]}
            for i in range(9)]
    ds = _dataset(tmp_path, rows=rows, n_videos=2)
    with pytest.raises(DatasetCheckError) as err:
        check_dataset("d", ds)
    msg = str(err.value)
    assert "7 of 9 videos" in msg and "first: v2, v3, v4, v5, v6, ..." in msg
    assert "datasets.d.allow_missing_videos: true" in msg
    ds["allow_missing_videos"] = True
    assert check_dataset("d", ds)["missing_videos"] == [f"v{i}" for i in range(2, 9)]


def test_checkpoint_missing_or_not_matching_the_backbone(tmp_path):
    from extract.backbone import load_backbone, save_official_layout

    with pytest.raises(DatasetCheckError, match=r"nope\.pt: no such file"):
        check_dataset("d", _dataset(tmp_path, backbone="1b", checkpoint=str(tmp_path / "nope.pt")))
    with pytest.raises(DatasetCheckError, match=r"backbone '1b' needs datasets\.d\.checkpoint"):
        check_dataset("d", _dataset(tmp_path, backbone="1b"))
    vision, text = load_backbone("tiny", None)
    tiny = tmp_path / "tiny.pt"
    save_official_layout(vision, text, tiny)
    # a tiny checkpoint for the tiny backbone passes; for 1b the keys are there but every shape is wrong
    check_dataset("d", _dataset(tmp_path, checkpoint=str(tiny)))
    with pytest.raises(DatasetCheckError) as err:
        check_dataset("d", _dataset(tmp_path, backbone="1b", checkpoint=str(tiny)))
    msg = str(err.value)
    assert "vision_encoder.blocks.0.attn.proj.weight: expected [1408, 1408], found [128, 128]" in msg
    assert "more)" in msg  # the first keys are listed, then the count of the rest
    # a key removed from an otherwise matching checkpoint is named
    import torch

    sd = torch.load(tiny, weights_only=True)
    sd["module"].pop("vision_encoder.blocks.0.attn.qkv.weight")
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(DatasetCheckError, match=r"vision_encoder\.blocks\.0\.attn\.qkv\.weight"):
        check_dataset("d", _dataset(tmp_path, checkpoint=str(tmp_path / "broken.pt")))


def test_snakemake_stops_before_any_job(tmp_path):
    ds = _dataset(tmp_path, rows=[{"qid": 0, "query": "q", "duration": 5.0, "vid": "v0",
                                   "relevant_windows": [[3, 1]]}])
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["datasets"]["bad"] = ds
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"),
                           "--cores", "1", "results/bad/extraction.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "train.jsonl:1: relevant_windows[0] = [3, 1] needs 0 <= start < end" in out
    assert not (tmp_path / "cache").exists() and not (tmp_path / "logs").exists()  # nothing ran


def test_qvh_configuration_plans_the_whole_chain_on_the_real_annotations(tmp_path):
    """The shipped qvh entry, its paths set: the checks read every real annotation line and the dry run
    plans extraction, 3 training seeds, predictions and metrics on val and test (videos: 3 present, the rest allowed
    missing; backbone tiny since the 1b checkpoint is not available here)."""
    from conftest import DATA

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    qvh = cfg["datasets"]["qvh"]
    # the shipped file names, found in ../shared/data (the test split: the labels released after the server closed)
    assert qvh["splits"]["report"] == ["val", "test"]
    qvh["annotations"] = {s: str(DATA / "qvhighlights" / Path(p).name) for s, p in qvh["annotations"].items()}
    assert Path(qvh["annotations"]["test"]).name == "highlight_test_with_gt.jsonl"
    videos = tmp_path / "videos"
    videos.mkdir()
    first = [json.loads(line)["vid"] for line in open(qvh["annotations"]["train"])][:3]
    for vid, src in zip(first, REAL_VIDEOS):
        shutil.copy(src, videos / f"{vid}.mp4")
    qvh.update(videos=str(videos), backbone="tiny", checkpoint=None, allow_missing_videos=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-n",
                           "results/qvh/metrics.json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for rule, count in (("init_store", 1), ("extract_shard", 4), ("train", 3), ("predict", 6),
                        ("evaluate_run", 6), ("aggregate_model", 1)):
        assert re.search(rf"^{rule}\s+{count}\s*$", proc.stdout, flags=re.M), (rule, proc.stdout[-1500:])
