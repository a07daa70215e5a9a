"""Items keyed by content: an edited query, a replaced video are extracted again; a resumed store equals an
uninterrupted one bit for bit; one writer per store (issue 19, rows 1, 2 and 8; points 4 and 5).

Each run is the real `python -m extract videos` command with the tiny backbone on small h264 files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_video
from extract.cache import FeatureStore
from extract.reader import open_features


def extract(videos, out, queries, *extra, check=True, wait=True):
    cmd = [sys.executable, "-m", "extract", "videos", "--videos", str(videos), "--out", str(out), "--queries",
           str(queries), "--backbone", "tiny", "--no-progress", "--workers", "1", "--batch-clips", "3",
           "--threads", "1", "--device", "cpu", *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def summary(out):
    return json.loads((out / "summary.json").read_text())


def shard_report(out):
    return json.loads((out / "shards" / "0-of-1.json").read_text())


def store_items(out) -> dict:
    """{(group, key): float16 array} of every item of a store, read with its checksum."""
    store = FeatureStore(out / "features.zarr")
    return {(g, k): store.read_video(k) if g == "videos" else store.read_query(k)
            for g in ("videos", "queries") for k in store.keys(g)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    base = tmp_path_factory.mktemp("stale")
    folder = base / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", n_frames=60, size=(96, 72))
    write_video(folder / "b.mp4", n_frames=45, size=(96, 72), bframes=0)
    write_video(base / "other.mp4", n_frames=90, size=(96, 72))  # 6 s: a replacement for a.mp4
    return base


def test_edited_queries_and_a_replaced_video_are_extracted_again_like_a_fresh_run(videos, tmp_path):
    """Rows 1, 2 and 8: after inserting a line at the top of the queries file, editing another and replacing a video
    with another file of the same name, the resumed store equals a store extracted from scratch, bit for bit, and
    its report names what changed. A second run extracts nothing; a touched (not changed) video is kept."""
    folder = tmp_path / "videos"
    shutil.copytree(videos / "videos", folder)
    queries = tmp_path / "q.txt"
    queries.write_text("a white bar moves right\nsomething green\n")
    out = tmp_path / "out"
    extract(folder, out, queries)
    first = open_features(out)
    assert first.query_info("1")["query"] == "a white bar moves right" and first.info("a")["n_clips"] == 2

    queries.write_text("a new first line\na white bar moves right\nsomething else entirely\n")
    shutil.copy(videos / "other.mp4", folder / "a.mp4")
    extract(folder, out, queries)
    report = shard_report(out)
    assert sorted(c["item"] for c in report["changed"]) == ["query '1'", "query '2'", "video 'a'"]
    assert "source file changed" in next(c["reason"] for c in report["changed"] if c["item"] == "video 'a'")
    assert report["queries"]["extracted"] == 3 and report["videos"]["extracted"] == 1  # b.mp4 kept
    assert summary(out)["changed_reextracted"] == report["changed"]
    resumed = open_features(out)
    assert [resumed.query_info(q)["query"] for q in ("1", "2", "3")] == [
        "a new first line", "a white bar moves right", "something else entirely"]
    assert resumed.info("a")["n_clips"] == 3 and resumed.duration("a") == pytest.approx(6.0)

    fresh = tmp_path / "fresh"
    extract(folder, fresh, queries)
    got, want = store_items(out), store_items(fresh)
    assert sorted(got) == sorted(want)
    for key in want:  # point 5: neither batch composition nor resuming changes a bit
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))

    os.utime(folder / "b.mp4")  # touched, same bytes: compared by content, not extracted again
    again = shard_report(out) if extract(folder, out, queries) else None
    assert again["videos"]["extracted"] == 0 and again["queries"]["extracted"] == 0 and again["changed"] == []
    assert again["sources"]["b"][1] == (folder / "b.mp4").stat().st_mtime_ns


def test_a_second_writer_stops_in_one_line_and_leaves_no_duplicate_packs(videos, tmp_path):
    """Point 4 and the paragraph's case: two `extract videos` on one --out. While a writer holds the shard's lock
    (here the test itself) another one stops at once, in one line, writing nothing; two started together never
    fail on the store's creation and never extract an item twice."""
    from extract.locking import exclusive

    folder = tmp_path / "videos"
    shutil.copytree(videos / "videos", folder)
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(f"query {i}" for i in range(40)) + "\n")
    out = tmp_path / "out"
    with exclusive(out / "features.zarr.locks" / "0-of-1.lock", "test"):
        blocked = extract(folder, out, queries, check=False)
    assert blocked.returncode == 2, blocked.stderr
    lines = blocked.stderr.strip().splitlines()
    assert len(lines) == 1 and "being written by another process" in lines[0] and str(out) in lines[0], lines
    assert f"pid {os.getpid()}" in lines[0]
    assert not list((out / "features.zarr" / "packs").glob("*/")) and not (out / "summary.json").exists()

    both = [extract(folder, out, queries, wait=False) for _ in range(2)]
    codes = [p.wait(timeout=300) for p in both]
    errors = [p.stderr.read() for p in both]
    assert sorted(codes) in ([0, 0], [0, 2]), errors
    assert not any("Traceback" in e or "exists" in e for e in errors), errors
    packs = {}
    for meta in (out / "features.zarr" / "packs").glob("*/zarr.json"):
        attrs = json.loads(meta.read_text())["attributes"]
        for key in attrs["index"]:
            packs.setdefault((attrs["group"], key), []).append(meta.parent.name)
    assert len(packs) == 42 and all(len(p) == 1 for p in packs.values())  # 2 videos + 40 queries, once each


def test_query_features_do_not_depend_on_the_batch():
    """Point 5 at the function: the same query alone, among others, first or last, long or short neighbours."""
    from extract.backbone import load_backbone
    from extract.features import QUERY_ROWS, encode_queries
    from extract.tokenizer import build_tokenizer

    _, text = load_backbone("tiny", None)
    tok = build_tokenizer(text.name, max_len=40)
    ident = {"text_layers": [-2, -1]}
    others = [f"query {i} " + "word " * (i % 30) for i in range(QUERY_ROWS + 5)]
    target = "a red square grows while the blue circle fades"
    alone = encode_queries(text, tok, [target], ident, "cpu")[0]
    for batch in ([target] + others, others + [target], others[:3] + [target], others[:QUERY_ROWS - 1] + [target]):
        np.testing.assert_array_equal(encode_queries(text, tok, batch, ident, "cpu")[batch.index(target)], alone)
