"""Extraction jobs on real h264 files with the tiny backbone: faults recorded, killed shards resume."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REAL_VIDEOS, ROOT, write_video
from extract.cache import FeatureStore
from extract.shard import rate


def _dataset(tmp_path, n_good=6):
    videos = tmp_path / "videos"
    videos.mkdir()
    rows = []
    for i in range(n_good):
        src = REAL_VIDEOS[i % len(REAL_VIDEOS)] if i < 3 else write_video(tmp_path / f"gen{i}.mp4", n_frames=150)
        shutil.copy(src, videos / f"good{i}.mp4")
        rows.append(f"good{i}")
    whole = write_video(tmp_path / "whole.mp4", n_frames=90, faststart=True).read_bytes()
    (videos / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (videos / "corrupt.mp4").write_bytes(bytes(range(256)) * 20)
    rows += ["truncated", "corrupt", "absent"]
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps({"qid": i, "query": f"query number {i}", "duration": 4.0, "vid": v,
                                         "relevant_windows": [[0.0, 2.0]]}) for i, v in enumerate(rows)))
    return videos, ann


def _init(tmp_path):
    identity = {"backbone": "tiny", "checkpoint": None, "clip_len": 1.0, "frames_per_clip": 4, "image_size": 224,
                "resize": "official", "vision_layers": [-2, -1], "pooling": "attn", "text_layers": [-2, -1], "text_max_len": 40,
                "gelu": "tanh", "seed": 0, "feature_version": 0}
    out = tmp_path / "store.json"
    subprocess.run([sys.executable, "-m", "extract", "init-store", "--store", str(tmp_path / "f.zarr"),
                    "--identity", json.dumps(identity), "--out", str(out)], check=True, cwd=ROOT)
    return out


def _shard_cmd(store_json, videos, ann, report, flush_items=1000):
    return [sys.executable, "-m", "extract", "shard", "--store-json", str(store_json), "--annotations", str(ann),
            "--videos", str(videos), "--shard", "0", "--n-shards", "1", "--workers", "1", "--batch-clips", "2",
            "--threads", "1", "--timeout", "60", "--device", "cpu", "--flush-items", str(flush_items),
            "--out", str(report)]


def test_faulty_videos_are_recorded_and_the_rest_extracted(tmp_path):
    videos, ann = _dataset(tmp_path, n_good=3)
    store_json = _init(tmp_path)
    report_path = tmp_path / "report.json"
    proc = subprocess.run(_shard_cmd(store_json, videos, ann, report_path), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    failed = {f["vid"]: f for f in report["videos"]["failed"]}
    assert set(failed) == {"truncated", "corrupt", "absent"}
    assert failed["truncated"]["file"].endswith("truncated.mp4") and failed["truncated"]["reason"]
    assert "not found" in failed["absent"]["reason"]
    assert report["videos"]["extracted"] == 3 and report["queries"]["extracted"] == 6  # text of every query
    store = FeatureStore(tmp_path / "f.zarr")
    feats = store.read_video("good0")  # bigbuckbunny: 5.28 s at 1-s clips
    assert feats.shape == (2, 5, 128) and np.isfinite(feats).all()
    assert "FAILED truncated" in proc.stdout
    assert f"; {rate(report['clips_per_s'])} clips/s" in proc.stdout
    summary = tmp_path / "summary.json"
    subprocess.run([sys.executable, "-m", "extract", "summary", "--store-json", str(store_json), "--shards",
                    str(report_path), "--out", str(summary)], check=True, cwd=ROOT, capture_output=True)
    summarised = {f["vid"]: f for f in json.loads(summary.read_text())["failed_videos"]}
    assert list(summarised) == ["absent", "corrupt", "truncated"]
    # the decoder's own reason reaches the summary (results/<dataset>/extraction.json is a copy of it)
    assert "moov atom not found" in summarised["corrupt"]["reason"]
    assert "partial file" in summarised["truncated"]["reason"]


def test_rates_print_significant_digits():
    """The 1b backbone on a CPU runs ~0.07 clips/s: one decimal printed "0.0 clips/s"."""
    assert [rate(x) for x in (0.0712, 0.00042, 1.5, 9.96, 12.34, 1234.5, 0.0)] == \
        ["0.071", "0.00042", "1.5", "10.0", "12", "1234", "0"]


def _children(pid):
    from pathlib import Path

    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_killed_shard_resumes_and_damaged_items_are_reextracted(tmp_path):
    """Killed mid-run: the packs written before the kill are kept, their videos not recomputed. Then a chunk
    deleted, one truncated and one altered in the finished cache: the next run re-extracts exactly those."""
    videos, ann = _dataset(tmp_path, n_good=8)
    store_json = _init(tmp_path)
    report = tmp_path / "report.json"
    cmd = _shard_cmd(store_json, videos, ann, report, flush_items=1)  # a pack per item
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    packs = tmp_path / "f.zarr" / "packs"
    deadline = time.time() + 240
    done = []
    while time.time() < deadline and not done:
        done = [f"good{i}" for i in range(8) if FeatureStore(tmp_path / "f.zarr").video_complete(f"good{i}")]
        time.sleep(0.05)
    assert done and proc.poll() is None, "the shard finished before it could be killed"
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not report.exists()  # the report (the Snakemake output) is written only by a finished shard
    deadline = time.time() + 10  # its decode workers end with it (they used to wait on their queues forever)
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert workers and not any(_alive(p) for p in workers)
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in packs.glob("videos-*/zarr.json")}
    finished = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    result = json.loads(report.read_text())
    assert result["videos"]["already_complete"] >= len(done) and not result["damaged"]
    assert result["videos"]["already_complete"] + result["videos"]["extracted"] == 8
    for name, stamp in stamps.items():  # finished packs were not rewritten
        assert (packs / name / "zarr.json").stat().st_mtime_ns == stamp
    store = FeatureStore(tmp_path / "f.zarr")
    assert all(store.video_complete(f"good{i}") for i in range(8))
    before = {f"good{i}": store.read_video(f"good{i}") for i in range(8)}

    chunks = {v: packs / store.entry("videos", v).pack / "c" / "0" for v in ("good1", "good4", "good6")}
    chunks["good1"].unlink()
    chunks["good4"].write_bytes(chunks["good4"].read_bytes()[:100])
    altered = bytearray(chunks["good6"].read_bytes())
    altered[-1] ^= 0x01
    chunks["good6"].write_bytes(bytes(altered))
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(report.read_text())
    assert sorted(d["item"] for d in result["damaged"]) == ["video 'good1'", "video 'good4'", "video 'good6'"]
    assert result["videos"]["extracted"] == 3 and result["videos"]["already_complete"] == 5
    assert "DAMAGED video 'good6' re-extracted: " in rerun.stdout and "checksum mismatch" in rerun.stdout
    store = FeatureStore(tmp_path / "f.zarr")
    assert not store.verify()["videos"]
    for vid, feats in before.items():  # the same features again (same model, same frames)
        np.testing.assert_array_equal(store.read_video(vid), feats)
