"""`python -m extract export --format moment_detr`: files loaded the way moment_detr-style loaders load them.

The loader below follows the semantics of the dataset code of moment_detr (moment_detr/start_end_dataset.py),
which QD-DETR, CG-DETR and lighthouse kept: ``np.load(f"{dir}/{vid}.npz")["features"]`` cut at ``max_v_l``,
cast to float32 and L2-normalised per row; several feature folders are cut to the shortest and concatenated
along the feature axis; ``ctx_l`` is the row count; a window in seconds becomes clips with ``clip_len``
(``int(start / clip_len)`` .. ``min(int(end / clip_len), ctx_l) - 1``) and a predicted span, normalised by the
clip count, goes back to seconds by multiplying with the video's duration; queries are
``np.load(f"{dir}/qid{qid}.npz")[q_feat_type]`` cut at ``max_q_l`` and normalised the same way. It is written
here from that description, not imported from those projects.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from extract.reader import open_features


def l2_rows(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)


def load_video(dirs, vid, max_v_l=75, normalize=True):
    feats = []
    for d in dirs:
        f = np.load(d / f"{vid}.npz")["features"][:max_v_l].astype(np.float32)
        feats.append(l2_rows(f) if normalize else f)
    n = min(len(f) for f in feats)
    return np.concatenate([f[:n] for f in feats], axis=1)


def load_query(d, qid, kind="last_hidden_state", max_q_l=32, normalize=True):
    q = np.load(d / f"qid{qid}.npz")[kind].astype(np.float32)
    if kind == "last_hidden_state":
        q = q[:max_q_l]
    return l2_rows(q) if normalize else q


def export(store, out, *extra):
    proc = subprocess.run([sys.executable, "-m", "extract", "export", "--store", str(store), "--format", "moment_detr",
                           "--out", str(out), "--no-progress", *extra], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "export.json").read_text()), proc.stdout


@pytest.fixture(scope="module")
def exported(folder_run, tmp_path_factory):
    base, _, _ = folder_run
    out = tmp_path_factory.mktemp("export")
    last, stdout = export(base / "out", out / "last", "--layer", "-1")
    second, _ = export(base / "out", out / "second", "--layer", "-2", "--text-layer", "-2")
    return open_features(base / "out"), out, last, second, stdout


def test_video_files_load_like_moment_detr_and_cover_the_video(exported):
    feats, out, info, _, stdout = exported
    assert info["videos"] == 3 and info["v_feat_dim"] == 128 and info["clip_len"] == 2.0
    assert f"--v_feat_dim {info['v_feat_dim']}" in stdout and "--clip_length 2" in stdout
    for vid in feats.videos:
        raw = np.load(out / "last" / "video" / f"{vid}.npz")
        assert list(raw.keys()) == ["features"] and raw["features"].dtype == np.float32
        v = load_video([out / "last" / "video"], vid)
        np.testing.assert_allclose(v, l2_rows(feats.video(vid, layer=-1)), rtol=1e-6)
        # ctx_l clips of clip_len seconds span the video (to half a clip), so predictions normalised by the clip
        # count and scaled back by the duration land on the clips they were predicted on
        ctx_l, duration = len(v), feats.duration(vid)
        assert abs(ctx_l * info["clip_len"] - duration) <= info["clip_len"] / 2 + 1e-6
        # a span predicted on clips [a, b), normalised by ctx_l and scaled back by the duration (their inference),
        # lands within half a clip of a * clip_len seconds
        for a in range(ctx_l + 1):
            assert abs(a / ctx_l * duration - a * info["clip_len"]) <= info["clip_len"] / 2 + 1e-6
        # the clip a loader assigns to a second t (int(t / clip_len), at most ctx_l - 1) is the cached clip whose
        # span holds t; past the last clip only a remainder shorter than half a clip, which has no clip of its own
        times = feats.clip_times(vid)
        for t in np.linspace(0, duration - 1e-3, 7):
            i = min(int(t / info["clip_len"]), ctx_l - 1)
            slack = info["clip_len"] / 2 if i == ctx_l - 1 else 1e-6
            assert times[i, 0] <= t < times[i, 1] + slack


def test_two_feature_folders_concatenate_like_v_feat_dirs(exported):
    feats, out, _, second, _ = exported
    assert second["layer"] == "-2"
    for vid in feats.videos:
        v = load_video([out / "last" / "video", out / "second" / "video"], vid)
        assert v.shape == (feats.info(vid)["n_clips"], 256)
        np.testing.assert_allclose(v[:, 128:], l2_rows(feats.video(vid, layer=-2)), rtol=1e-6)


def test_query_files_hold_tokens_and_cls(exported):
    feats, out, info, _, _ = exported
    assert info["queries"] == 2 and info["t_feat_dim"] == 384
    for qid in feats.queries:
        q = load_query(out / "last" / "text", qid)
        assert q.shape == (feats.query_info(qid)["n_tokens"], 384)
        np.testing.assert_allclose(q, l2_rows(feats.query(qid, layer=-1)), rtol=1e-6)
        pooled = load_query(out / "last" / "text", qid, kind="pooler_output")
        np.testing.assert_allclose(pooled, q[0], rtol=1e-6)  # the [CLS] row


def test_lighthouse_and_tacos_layouts(folder_run, tmp_path):
    """lighthouse reads features/<dataset>/<feature>/{vid}.npz and features/<dataset>/clip_text/qid{qid}.npz
    (training/config.py); QD-DETR and CG-DETR read TACoS queries as {qid}.npz."""
    base, _, _ = folder_run
    feats = open_features(base / "out")
    root = tmp_path / "features" / "qvhighlight"
    info, _ = export(base / "out", root, "--video-dir", "clip", "--text-dir", "clip_text")
    assert info["v_feat_dir"] == str(root / "clip") and sorted(p.stem for p in (root / "clip").iterdir()) == feats.videos
    assert load_query(root / "clip_text", "3").shape[1] == 384
    export(base / "out", tmp_path / "tacos", "--text-prefix", "")
    assert sorted(p.name for p in (tmp_path / "tacos" / "text").iterdir()) == ["1.npz", "3.npz"]


def test_mean_and_concat_layers(folder_run, tmp_path):
    base, _, _ = folder_run
    feats = open_features(base / "out")
    export(base / "out", tmp_path / "mean", "--layer", "mean")
    info, _ = export(base / "out", tmp_path / "cat", "--layer", "concat")
    assert info["v_feat_dim"] == 4 * 128 and info["t_feat_dim"] == 4 * 384
    x = feats.video("bikes")
    np.testing.assert_allclose(np.load(tmp_path / "mean" / "video" / "bikes.npz")["features"], x.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "cat" / "video" / "bikes.npz")["features"][:, 128:256], x[1])


def test_a_layer_that_is_not_cached_is_a_one_line_error(folder_run, tmp_path):
    base, _, _ = folder_run
    proc = subprocess.run([sys.executable, "-m", "extract", "export", "--store", str(base / "out"), "--out",
                           str(tmp_path / "x"), "--layer", "-7"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "vision layer -7 is not cached (cached: [-4, -3, -2, -1])" in proc.stderr
    assert "Traceback" not in proc.stderr
