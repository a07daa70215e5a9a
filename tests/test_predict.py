"""One-video prediction with the demo model, on real h264 files and on a video longer than any training one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REAL_VIDEOS, ROOT


@pytest.fixture(scope="module")
def demo_checkpoint(demo_workflow):
    _, work = demo_workflow
    return work / "results/demo/sdst/seed0/checkpoint_best.pt"


def _predict(video, query, checkpoint, out):
    proc = subprocess.run([sys.executable, "-m", "sdst.predict", "--video", str(video), "--query", query,
                           "--checkpoint", str(checkpoint), "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / f"{video.stem}.json").read_text())


@pytest.mark.parametrize("video", REAL_VIDEOS, ids=lambda p: p.name)
def test_predict_on_real_h264(video, demo_checkpoint, tmp_path):
    result = _predict(video, "a white rabbit in a field", demo_checkpoint, tmp_path)
    n_clips = len(result["pred_saliency_scores"])
    assert n_clips == len(result["clip_spans"]) >= 1
    assert 1 <= len(result["pred_relevant_windows"]) <= 10
    for s, e, score in result["pred_relevant_windows"]:
        assert 0 <= s < e <= result["duration"] + 1e-6 and 0 <= score <= 1
    scores = [w[2] for w in result["pred_relevant_windows"]]
    assert scores == sorted(scores, reverse=True)
    assert (tmp_path / f"{video.stem}.png").stat().st_size > 10_000


def test_predict_finds_the_moment_in_a_video_longer_than_any_training_video(demo_workflow, demo_checkpoint,
                                                                         tmp_path):
    """A 90-s demo-style video (training videos are at most 36 s) with a red circle from 60 s to 72 s."""
    from extract.demo import DemoSpec, write_video as write_demo_video

    plan = {"duration": 90.0, "background": [[70, 70, 75], [60, 65, 60]], "drift": 0.03, "noise_seed": 1,
            "objects": [{"colour": "blue", "shape": "square", "motion": "up", "clips": (5, 10), "size": 0.22},
                        {"colour": "red", "shape": "circle", "motion": "right", "clips": (30, 36), "size": 0.22},
                        {"colour": "yellow", "shape": "triangle", "motion": "left", "clips": (40, 43),
                         "size": 0.22}]}
    video = tmp_path / "long.mp4"
    write_demo_video(video, plan, DemoSpec())
    result = _predict(video, "a red circle moves from left to right", demo_checkpoint, tmp_path / "out")
    assert len(result["pred_saliency_scores"]) == 45
    s, e, _ = result["pred_relevant_windows"][0]
    inter = max(0.0, min(e, 72.0) - max(s, 60.0))
    assert inter / (max(e, 72.0) - min(s, 60.0)) >= 0.5, result["pred_relevant_windows"][:3]


def test_unreadable_video_is_a_clear_error(demo_checkpoint, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    proc = subprocess.run([sys.executable, "-m", "sdst.predict", "--video", str(bad), "--query", "x",
                           "--checkpoint", str(demo_checkpoint), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "bad.mp4: cannot be decoded" in proc.stderr and "Traceback" not in proc.stderr


def _model_for_backbone(tmp_path, backbone_file):
    """A small untrained SDST checkpoint whose features came from the tiny backbone saved in ``backbone_file``."""
    from conftest import synthetic_run
    from extract.backbone import load_backbone, save_official_layout
    from extract.identity import checkpoint_identity
    from sdst.checkpoint import save_checkpoint
    from sdst.model import build_model

    save_official_layout(*load_backbone("tiny", None, seed=0), backbone_file)
    run = synthetic_run({"train": "train.jsonl", "val": "val.jsonl"})
    run["model"]["params"]["levels"] = [-2, -1]
    ident = {"backbone": "tiny", "checkpoint": checkpoint_identity(str(backbone_file)), "clip_len": 2.0,
             "frames_per_clip": 4, "image_size": 224, "resize": "decoder", "vision_layers": [-2, -1],
             "pooling": "attn", "text_layers": [-2, -1], "text_max_len": 40, "gelu": "tanh"}
    dims = {"video": 128, "text": 384, "layers": 2, "extraction": ident}
    model = build_model("sdst", run["model"]["params"], 128, 384, 2)
    save_checkpoint(tmp_path / "sdst.pt", {"run": run, "dims": dims, "model": model.state_dict()})
    return tmp_path / "sdst.pt"


def test_backbone_other_than_the_features_is_refused_unless_allowed(tmp_path):
    from sdst import predict

    ckpt = _model_for_backbone(tmp_path, tmp_path / "tiny.pt")
    other = tmp_path / "other.pt"
    other.write_bytes((tmp_path / "tiny.pt").read_bytes())  # same weights, but not the file the model records
    proc = subprocess.run([sys.executable, "-m", "sdst.predict", "--video", str(REAL_VIDEOS[0]), "--query", "a rabbit",
                           "--checkpoint", str(ckpt), "--backbone-checkpoint", str(other), "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "backbone checkpoint tiny.pt" in proc.stderr and "other.pt" in proc.stderr
    assert "--allow-backbone-mismatch" in proc.stderr and not (tmp_path / "out").exists()
    predict.Predictor(str(ckpt), str(tmp_path / "tiny.pt"), device="cpu")  # the recorded file
    predict.Predictor(str(ckpt), str(other), device="cpu", allow_backbone_mismatch=True)  # the user says so
    with pytest.raises(ValueError, match="a randomly initialised backbone"):  # features of a seeded random init
        predict.check_backbone("m.pt", {"backbone": "tiny", "checkpoint": None}, str(other))
