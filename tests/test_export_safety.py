"""`python -m extract export` never writes outside --out, never mixes two exports, never exports damage silently
(issue 19: rows 3, 4 and 5 and the export cases of its second paragraph)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from conftest import ROOT
from extract.cache import FeatureStore
from extract.reader import open_features

IDENTITY = {"backbone": "tiny", "clip_len": 2.0, "vision_layers": [-2, -1], "text_layers": [-2, -1]}


def make_store(path, vids=("v0", "v1"), qids=("0", "1"), clips=3, dim=8, seed=0):
    """A real store of random features: (2 layers, clips, dim) videos, (2 layers, 4 tokens, dim) queries."""
    rng = np.random.default_rng(seed)
    store = FeatureStore.create(path / "features.zarr", {**IDENTITY, "seed": seed})
    for vid in vids:
        store.write_video(vid, rng.normal(size=(2, clips, dim)).astype(np.float32), duration=clips * 2.0)
    for qid in qids:
        store.write_query(qid, rng.normal(size=(2, 4, dim)).astype(np.float32), vid=vids[0], query=f"q {qid}")
    store.close()
    return path


def export(store, out, *extra):
    return subprocess.run([sys.executable, "-m", "extract", "export", "--store", str(store), "--out", str(out),
                           "--no-progress", *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_ids_that_are_paths_are_refused_before_anything_is_written(tmp_path):
    """Row 3 and the `sub/dir` case: qids holding a path neither overwrite a video file nor escape --out."""
    store = make_store(tmp_path / "s", vids=("x",), qids=("../video/x", "../../escaped_q", "sub/dir", "ok"))
    out = tmp_path / "deep" / "out"
    line = one_line_error(export(store, out), "3 id(s) cannot be file names", "'../video/x'",
                          "'../../escaped_q'", "'sub/dir'", "path separator", "nothing was written")
    assert "'ok'" not in line
    assert files(tmp_path / "deep") == [] and not list(tmp_path.glob("*escaped*"))
    for qid in ("", ".", "..", "a\nb"):
        assert export(make_store(tmp_path / f"s{len(qid)}{qid.isalpha()}", qids=(qid,)), out).returncode == 2


def test_a_damaged_store_fails_before_the_first_file_unless_told_to_skip(tmp_path):
    """Row 4: one truncated chunk. The export fails naming the item and writes nothing; --skip-damaged writes the
    rest and lists what it left out; the reader says which items are damaged instead of hiding them."""
    store = make_store(tmp_path / "s", vids=("v0", "v1"), qids=("0", "1", "2"))
    good = FeatureStore(store / "features.zarr")
    chunk = store / "features.zarr" / "packs" / good.entry("queries", "1").pack / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:130])  # query 0 (128 bytes) still whole, 1 and 2 cut
    out = tmp_path / "out"
    one_line_error(export(store, out), "2 damaged item(s), nothing exported", "query '1'", "query '2'",
                   "truncated", "--skip-damaged")
    assert [f for f in files(out) if not f.startswith(".export")] == []

    proc = export(store, out, "--skip-damaged")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "export.json").read_text())
    assert (info["videos"], info["queries"]) == (2, 1) and len(info["skipped"]) == 2
    assert "SKIPPED (damaged) query '1'" in proc.stdout
    assert sorted(p.name for p in (out / "text").iterdir()) == ["qid0.npz"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = open_features(store)
    assert any("2 damaged item(s) left out (query '1', query '2')" in str(w.message) for w in caught)
    assert sorted(feats.damaged["queries"]) == ["1", "2"] and feats.queries == ["0"]


def test_a_killed_reexport_leaves_the_previous_export_whole(tmp_path):
    """Row 5: a re-export with another layer, killed while writing, leaves every file and export.json of the
    first export as they were; finished, it replaces them all and leaves no staging folder behind."""
    store = make_store(tmp_path / "s", vids=[f"v{i:04d}" for i in range(1500)], qids=("0",), clips=40, dim=64)
    out = tmp_path / "out"
    assert export(store, out, "--layer", "-1").returncode == 0
    before = {f: (out / f).read_bytes() for f in files(out) if not f.startswith(".export")}
    proc = subprocess.Popen([sys.executable, "-m", "extract", "export", "--store", str(store), "--out", str(out),
                             "--no-progress", "--layer", "-2"], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob(".export-staging-*/video/*.npz"))) < 100:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out.glob(".export-staging-*/video/*.npz")), "the export finished before it could be killed"
    after = {f: (out / f).read_bytes() for f in files(out) if not f.startswith(".export")}
    assert after == before  # layer -1 everywhere, export.json included

    assert export(store, out, "--layer", "-2").returncode == 0
    assert json.loads((out / "export.json").read_text())["layer"] == "-2"
    assert not list(out.glob(".export-staging-*")) and not list(out.glob(".export-old-*"))
    np.testing.assert_array_equal(np.load(out / "video" / "v0007.npz")["features"],
                                  open_features(store).video("v0007", layer=-2))


def test_export_errors_are_one_line_and_write_nothing(tmp_path):
    """The paragraph's export cases: a missing store, an --out that is a file, --text-layer foo, a store without
    queries (its message suggests no `--t_feat_dim None`)."""
    one_line_error(export(tmp_path / "nope", tmp_path / "o1"), "nope", "neither a feature store")
    store = make_store(tmp_path / "s")
    (tmp_path / "afile").write_text("x")
    one_line_error(export(store, tmp_path / "afile"), "--out must be a folder")
    one_line_error(export(store, tmp_path / "o2", "--text-layer", "foo"), "--text-layer 'foo'")
    one_line_error(export(store, tmp_path / "o3", "--layer", "-7"), "--layer", "vision layer -7 is not cached")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
    bare = make_store(tmp_path / "bare", qids=())
    proc = export(bare, tmp_path / "o4")
    assert proc.returncode == 0 and "None" not in proc.stdout and "the store holds none" in proc.stdout, proc.stdout


@pytest.mark.parametrize("group", ["videos", "queries"])
def test_verify_names_items_in_english_and_where_to_go(tmp_path, group):
    """`verify` printed "querie"; its repair hint put the target after --forcerun (which swallowed it)."""
    store = make_store(tmp_path / "s")
    fs = FeatureStore(store / "features.zarr")
    chunk = store / "features.zarr" / "packs" / fs.entry(group, fs.keys(group)[0]).pack / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[3] ^= 0x10
    chunk.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "extract", "verify", "--store", str(store)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    item = {"videos": "video", "queries": "query"}[group]
    assert f"DAMAGED {item} '{fs.keys(group)[0]}'" in proc.stdout and "querie " not in proc.stdout
    assert "the next `snakemake <target>` re-extracts" in proc.stdout and "--forcerun" not in proc.stdout
