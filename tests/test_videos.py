"""`python -m extract videos` (any folder of videos, no annotations) and the reader API (extract.reader)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from extract.videos import DEFAULTS, QueryFileError, read_queries
from extract.reader import open_features

ROOT = Path(__file__).resolve().parents[1]
from conftest import VIDEOS


def expected_clips(duration: float, clip_len: float) -> int:
    # the documented rule (pipeline.md, extract.decode.num_clips): a last partial clip counts when it covers at
    # least half a clip; written out here, not imported
    whole, rest = divmod(duration, clip_len)
    return max(1, int(whole) + (1 if rest >= clip_len / 2 else 0))


def assert_same_features(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to the last float16 bit of a few values: a forward pass over another mix of clips (batches are
    filled across videos, in the order the decoders deliver) sums in another order."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float16
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=2e-3, atol=1e-4)
    assert np.mean(a != b) < 0.01


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
        reader = decord.VideoReader(str(VIDEOS / f"{vid}.mp4"))
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
    from extract.identity import FEATURE_KEYS

    assert set(DEFAULTS) == set(FEATURE_KEYS)


def test_folder_identity_is_the_pipelines(demo_workflow):
    """A folder extracted with the demo's backbone and clip length lands in a store of the demo cache's identity
    (the same settings, the same features: tests/test_videos.py's Snakemake test compares values)."""
    from extract.cache import identity_hash
    from extract.videos import folder_identity

    _, work = demo_workflow
    (store_json,) = (work / "cache" / "demo").glob("*/store.json")
    assert identity_hash(folder_identity("tiny", None, 2.0)) == json.loads(store_json.read_text())["identity_hash"]


def test_snakemake_target_extracts_a_configured_folder(demo_workflow, folder_run):
    """`snakemake features/<name>/summary.json` for an entry of `folders`: the CLI's layout and features."""
    from conftest import snakemake

    proj, work = demo_workflow
    base, _, _ = folder_run
    folders = json.dumps({"real": {"videos": str(base / "videos"), "backbone": "tiny"}})
    snakemake(proj, work, "features/real/summary.json", "--cores", "2", "--config", f"folders={folders}")
    summary = json.loads((work / "features" / "real" / "summary.json").read_text())
    assert summary["videos"]["extracted"] == 3 and summary["videos"]["failed"] == 1
    assert (work / "logs" / "extract_folder" / "real.log").is_file()
    cli, rule = open_features(base / "out"), open_features(work / "features" / "real")
    assert rule.store.identity_hash == cli.store.identity_hash and rule.videos == cli.videos
    for vid in cli.videos:
        assert_same_features(rule.store.read_video(vid), cli.store.read_video(vid))
