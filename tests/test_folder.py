"""`python -m extract videos` (any folder of videos, no annotations) and the reader API (extract.reader)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from extract.folder import DEFAULTS, QueryFileError, read_queries
from extract.reader import open_features

ROOT = Path(__file__).resolve().parents[1]
from conftest import REAL_VIDEOS


def expected_clips(duration: float, clip_len: float) -> int:
    # the documented rule (pipeline.md, extract.decode.num_clips): a last partial clip counts when it covers at
    # least half a clip; written out here, not imported
    whole, rest = divmod(duration, clip_len)
    return max(1, int(whole) + (1 if rest >= clip_len / 2 else 0))


def test_folder_extraction_reports_counts_and_the_failed_file(folder_run):
    base, (first, summary), _ = folder_run
    assert summary["videos"] == {"total": 4, "extracted": 3, "already_complete": 0, "failed": 1}
    assert summary["queries"]["total"] == 2
    (failed,) = summary["failed_videos"]
    assert failed["vid"] == "broken" and failed["file"].endswith("broken.mp4") and failed["reason"]
    assert "FAILED broken" in first.stdout
    assert (base / "out" / "shards" / "0-of-1.json").is_file() and (base / "out" / "store.json").is_file()


def test_a_second_run_resumes_and_extracts_nothing_again(folder_run):
    _, _, (_, summary) = folder_run
    assert summary["videos"]["extracted"] == 0 and summary["videos"]["already_complete"] == 3
    assert summary["queries"]["already_complete"] == 2


def test_reader_api_gives_arrays_clip_times_and_queries(folder_run):
    import decord

    base, _, _ = folder_run
    feats = open_features(base / "out")  # the folder; the store path itself works too
    assert open_features(base / "out" / "features.zarr").videos == feats.videos
    assert feats.videos == ["bigbuckbunny", "bikes", "carphone_pristine"] and len(feats) == 3
    assert "broken" not in feats
    seen = []
    for vid, x in feats:
        seen.append(vid)
        reader = decord.VideoReader(str(REAL_VIDEOS / f"{vid}.mp4"))
        duration = len(reader) / reader.get_avg_fps()
        n = expected_clips(duration, 2.0)
        assert x.dtype == np.float32 and x.shape[:2] == (4, n) and np.isfinite(x).all()
        times = feats.clip_times(vid)
        assert times.shape == (n, 2) and times[0, 0] == 0.0 and np.allclose(np.diff(times[:, 0]), 2.0)
        assert math.isclose(times[-1, 1], min(n * 2.0, duration), rel_tol=1e-3)
        np.testing.assert_array_equal(feats.video(vid, layer=-1), x[3])
        np.testing.assert_array_equal(feats.video(vid, layer=-4), x[0])
    assert seen == feats.videos
    assert feats.queries == ["1", "3"]  # qid = line number; the blank line 2 is skipped
    q = feats.query(3, layer=-1)
    assert q.ndim == 2 and q.shape[0] == feats.query_info(3)["n_tokens"] and q.dtype == np.float32
    assert feats.query_info(1)["query"] == "a rabbit in a meadow"
    with pytest.raises(KeyError, match="layer -5 is not cached"):
        feats.video("bikes", layer=-5)
    with pytest.raises(KeyError, match="no video 'broken'"):
        feats.clip_times("broken")


def test_query_files_fail_naming_file_and_line(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text('{"qid": 7, "query": "a dog", "vid": "v1"}\n{"query": "a cat"}\n')
    assert read_queries(good) == {"7": ("a dog", "v1"), "2": ("a cat", "")}
    for text, message in (('{"qid": 1, "query": "x"}\n{"qid": 1, "query": "y"}\n', "q.jsonl:2: duplicate qid 1"),
                          ('{"qid": 1, "query": "x"}\nnot json\n', "q.jsonl:2: not valid JSON"),
                          ('{"qid": 1, "text": "x"}\n', "q.jsonl:1: expected an object with a non-empty"),
                          ('{"qid": true, "query": "x"}\n', "q.jsonl:1: field 'qid'")):
        good.write_text(text)
        with pytest.raises(QueryFileError, match=message):
            read_queries(good)


def test_cli_refuses_1b_without_checkpoint_and_missing_folders(tmp_path):
    run = [sys.executable, "-m", "extract", "videos", "--out", str(tmp_path / "out")]
    proc = subprocess.run(run + ["--videos", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "needs --checkpoint" in proc.stderr
    proc = subprocess.run(run + ["--videos", str(tmp_path / "nope"), "--backbone", "tiny"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no such folder of videos" in proc.stderr


def test_defaults_are_the_configured_feature_settings():
    extract = yaml.safe_load((ROOT / "config.yaml").read_text())["extract"]
    assert DEFAULTS == {k: extract[k] for k in DEFAULTS}
    from extract.config import FEATURE_KEYS

    assert set(DEFAULTS) == set(FEATURE_KEYS)


def test_folder_extraction_equals_the_pipelines_features(demo_workflow, tmp_path):
    """Same code path: two demo videos extracted as a folder give the pipeline cache's identity and values."""
    from extract.cache import FeatureStore
    from extract.folder import extract_folder

    _, work = demo_workflow
    (store_json,) = (work / "cache" / "demo").glob("*/store.json")
    pipeline = FeatureStore(json.loads(store_json.read_text())["store"])
    videos = tmp_path / "videos"
    videos.mkdir()
    picked = pipeline.keys("videos")[:2]
    for vid in picked:
        shutil.copy(work / "resources" / "demo" / "videos" / f"{vid}.mp4", videos / f"{vid}.mp4")
    extract_folder(videos, tmp_path / "out", backbone="tiny", clip_len=2.0, progress=False, workers=1)
    feats = open_features(tmp_path / "out")
    assert feats.store.identity_hash == pipeline.identity_hash
    for vid in picked:
        np.testing.assert_array_equal(feats.store.read_video(vid), pipeline.read_video(vid))
