"""`python -m extract import` (issue 22): folders in the SDST release's and moment_detr's layouts, written here with
numpy from their documented shapes (conftest.write_release), never through the project's export; bad files; resuming
by content; the sdst export round trip; `python -m extract compare`; the pre-flight check of imported datasets."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from conftest import write_release
from extract.__main__ import main as cli
from extract.cache import FeatureStore
from extract.reader import open_features


def run(capsys, *argv):
    """(exit status, stdout lines, stderr) of one in-process command."""
    rc = cli([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def import_release(capsys, rel, out, *extra):
    return run(capsys, "import", "--format", "sdst", "--videos", rel["videos"], "--queries", rel["queries"], "--out",
               out, "--annotations", *rel["annotations"].values(), "--no-progress", *extra)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release"), videos={"train": 3, "val": 2})


def test_sdst_release_imports_as_laid_out(release, tmp_path, capsys):
    rc, out, err = import_release(capsys, release, tmp_path / "out")
    assert rc == 0, (out, err)
    feats = open_features(tmp_path / "out")
    assert feats.vision_layers == feats.text_layers == [-5, -4, -3, -2, -1]
    assert feats.identity["import"] == "sdst" and len(feats.videos) == 5 and len(feats.queries) == 5
    rows = {json.loads(line)["vid"]: json.loads(line) for p in release["annotations"].values()
            for line in open(p)}
    for vid in feats.videos:
        raw = np.load(f"{release['videos']}/{vid}.npz")["visual_feats_interm_pooled"]  # (clips, layers, dim)
        x = feats.store.read_video(vid)  # (layers, clips, dim)
        assert x.dtype == np.float16 and np.array_equal(x, raw.transpose(1, 0, 2))
        assert np.array_equal(feats.video(vid, layer=-1), raw[:, -1].astype(np.float32))  # the final block is last
        assert feats.duration(vid) == rows[vid]["duration"]
        assert feats.info(vid)["sources"][0]["sha256"] and feats.info(vid)["source_dtype"] == "float16"
    raw = np.load(f"{release['queries']}/0.npz")["text_feats"]
    assert np.array_equal(feats.store.read_query("0"), raw) and feats.query_info("0")["query"] == rows["train00"]["query"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["features_digest"] and summary["failed_videos"] == [] and summary["videos"]["extracted"] == 5


def test_moment_detr_folders_are_concatenated_like_moment_detr(tmp_path, capsys):
    a = write_release(tmp_path / "a", videos={"train": 2}, fmt="moment_detr", vdim=8)
    b = write_release(tmp_path / "b", videos={"train": 2}, fmt="moment_detr", vdim=4, seed=1)
    # folder b's copy of train01 is shorter: moment_detr cuts every folder to the shortest, then concatenates
    short = np.load(f"{b['videos']}/train01.npz")["features"][:3]
    np.savez(f"{b['videos']}/train01.npz", features=short)
    (tmp_path / "b" / "clip").mkdir()
    for f in os.listdir(b["videos"]):  # a second folder with another name (the identity records folder names)
        shutil.move(f"{b['videos']}/{f}", tmp_path / "b" / "clip" / f)
    rc, out, err = run(capsys, "import", "--format", "moment_detr", "--videos", a["videos"], tmp_path / "b" / "clip",
                       "--queries", a["queries"], "--out", tmp_path / "out", "--no-progress")
    assert rc == 0, (out, err)
    feats = open_features(tmp_path / "out")
    assert feats.identity["video_folders"] == ["video", "clip"] and feats.vision_layers == [-1]
    x = feats.video("train01", layer=-1)
    first = np.load(f"{a['videos']}/train01.npz")["features"]
    assert x.shape == (3, 12) and np.array_equal(x, np.concatenate([first[:3], short], axis=1).astype(np.float32))
    assert feats.queries == ["0", "1"]  # qid{qid}.npz
    assert feats.query("1", layer=-1).shape[1] == 24


def test_bad_files_each_name_themselves_in_one_line_and_the_rest_is_imported(release, tmp_path, capsys):
    rel = {**release, "videos": str(tmp_path / "vid_feats"), "queries": str(tmp_path / "txt_feats")}
    shutil.copytree(release["videos"], rel["videos"])
    shutil.copytree(release["queries"], rel["queries"])
    good = np.load(f"{rel['videos']}/train00.npz")["visual_feats_interm_pooled"]
    np.savez(f"{rel['videos']}/train00.npz", features=good)  # wrong key
    np.savez(f"{rel['videos']}/train01.npz", visual_feats_interm_pooled=good[:, -1])  # wrong rank
    nan = good.copy()
    nan[2, 1, 5] = np.nan
    np.savez(f"{rel['videos']}/train02.npz", visual_feats_interm_pooled=nan)  # NaN
    np.savez(f"{rel['videos']}/val00.npz", visual_feats_interm_pooled=good[:, 1:])  # 4 layers where 5 are expected
    data = open(f"{rel['queries']}/4.npz", "rb").read()
    open(f"{rel['queries']}/4.npz", "wb").write(data[: len(data) // 2])  # a truncated npz
    rc, out, err = import_release(capsys, rel, tmp_path / "out")
    assert rc == 1 and err == ""
    failed = [line for line in out if "FAILED" in line]
    expect = {"train00.npz": "no array 'visual_feats_interm_pooled' or 'visual_feats_pooled' (it holds 'features')",
              "train01.npz": "has shape (", "train02.npz": "1 NaN or infinite value(s) (first at index [2, 1, 5])",
              "val00.npz": "4 layers on axis 1 of 'visual_feats_interm_pooled'",
              "4.npz": "not a readable .npz file (BadZipFile"}
    assert len(failed) == len(expect), failed
    for name, what in expect.items():
        (line,) = [f for f in failed if f"/{name})" in f]
        assert what in line, line
    feats = open_features(tmp_path / "out")
    assert feats.videos == ["val01"] and feats.queries == ["0", "1", "2", "3"]  # every sound file is in


def test_resume_keeps_unchanged_items_and_reimports_a_changed_file(release, tmp_path, capsys):
    rel = {**release, "videos": str(tmp_path / "vid_feats")}
    shutil.copytree(release["videos"], rel["videos"])
    assert import_release(capsys, rel, tmp_path / "out")[0] == 0
    first = json.loads((tmp_path / "out" / "import.json").read_text())
    os.utime(f"{rel['videos']}/train00.npz")  # touched: same bytes, so the same item
    assert import_release(capsys, rel, tmp_path / "out")[0] == 0
    again = json.loads((tmp_path / "out" / "import.json").read_text())
    assert again["videos"]["extracted"] == 0 and again["videos"]["already_complete"] == 5
    assert again["digest"] == first["digest"] and again["sources_digest"] == first["sources_digest"]
    x = np.load(f"{rel['videos']}/train01.npz")["visual_feats_interm_pooled"]
    np.savez(f"{rel['videos']}/train01.npz", visual_feats_interm_pooled=x[::-1].copy())  # other content
    assert import_release(capsys, rel, tmp_path / "out")[0] == 0
    changed = json.loads((tmp_path / "out" / "import.json").read_text())
    assert changed["videos"]["extracted"] == 1 and [c["item"] for c in changed["changed"]] == ["video 'train01'"]
    assert "SHA-256 differs" in changed["changed"][0]["reason"] or "bytes" in changed["changed"][0]["reason"]
    assert changed["digest"] != first["digest"] and changed["sources_digest"] != first["sources_digest"]
    assert np.array_equal(open_features(tmp_path / "out").store.read_video("train01"), x[::-1].transpose(1, 0, 2))


def test_token_layout_is_checked_against_the_query_texts(release, tmp_path, capsys):
    rc, out, err = import_release(capsys, release, tmp_path / "out", "--text-tokens", "plain")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--text-tokens plain: the token counts of 0 of 5 query files fit it, 5 fit --text-tokens cls" in err


def test_sdst_export_then_import_is_bit_identical(release, tmp_path, capsys):
    assert import_release(capsys, release, tmp_path / "a")[0] == 0
    # any store: also one extracted by this project's layout (4 layers, [CLS] first), written directly
    other = FeatureStore.create(tmp_path / "x" / "features.zarr", {"clip_len": 1.0, "vision_layers": [-4, -3, -2, -1],
                                                                   "text_layers": [-4, -3, -2, -1]})
    rng = np.random.default_rng(3)
    other.write_video("v", rng.normal(size=(4, 7, 16)).astype(np.float32))
    other.write_query("q1", rng.normal(size=(4, 5, 12)).astype(np.float32))
    other.close()
    for store, layers, dtype in ((tmp_path / "a", [], "float32"), (tmp_path / "x", ["--layers=-4,-3,-2,-1"],
                                                                   "float16")):
        exp = tmp_path / f"exp-{store.name}"
        rc, out, err = run(capsys, "export", "--store", store, "--format", "sdst", "--out", exp, "--dtype", dtype,
                           "--no-progress")
        assert rc == 0, err
        assert sorted(f for f in os.listdir(exp) if not f.startswith(".")) == ["export.json", "txt_feats", "vid_feats"]
        assert np.load(next((exp / "vid_feats").iterdir()))["visual_feats_interm_pooled"].dtype == dtype
        rc, out, err = run(capsys, "import", "--format", "sdst", "--videos", exp / "vid_feats", "--queries",
                           exp / "txt_feats", "--out", tmp_path / f"back-{store.name}", "--no-progress", *layers)
        assert rc == 0, (out, err)
        a, b = open_features(store), open_features(tmp_path / f"back-{store.name}")
        assert a.videos == b.videos and a.queries == b.queries
        for vid in a.videos:
            x, y = a.store.read_video(vid), b.store.read_video(vid)
            assert x.dtype == y.dtype == np.float16 and x.tobytes() == y.tobytes()
        for qid in a.queries:
            assert a.store.read_query(qid).tobytes() == b.store.read_query(qid).tobytes()
        rc, out, _ = run(capsys, "compare", "--ours", store, "--theirs", exp, "--out", tmp_path / f"cmp-{store.name}")
        assert rc == 0 and all(" | 0 | 0 | " in line for line in out if line.startswith("| -")), out


def test_compare_names_the_perturbed_layer(release, tmp_path, capsys):
    assert import_release(capsys, release, tmp_path / "a")[0] == 0
    theirs = tmp_path / "theirs"
    shutil.copytree(release["videos"], theirs / "vid_feats")
    shutil.copytree(release["queries"], theirs / "txt_feats")
    x = np.load(theirs / "vid_feats" / "val01.npz")["visual_feats_interm_pooled"].astype(np.float32)
    x[:, 3] += 0.2 * np.linalg.norm(x[:, 3]) / np.sqrt(x[:, 3].size)  # layer index 3 of 5: named -2
    np.savez(theirs / "vid_feats" / "val01.npz", visual_feats_interm_pooled=x.astype(np.float16))
    rc, out, _ = run(capsys, "compare", "--store", tmp_path / "a", "--with", theirs, "--out", tmp_path / "cmp")
    assert rc == 1
    video_rows = [line for line in out if line.startswith("| -")][:5]
    flagged = [line for line in video_rows if line.endswith("| NO |")]
    assert len(flagged) == 1 and flagged[0].startswith("| -2 |") and "| val01 |" in flagged[0]
    assert all(" | 0 | 0 | " in line for line in video_rows if not line.startswith("| -2 |"))
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["videos"]["items"]["val01"]["-2"][0] == pytest.approx(0.2, rel=0.05)
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_preflight_compares_annotations_with_the_files(release, tmp_path):
    from extract.checks import DatasetCheckError, check_dataset

    feats = {"import": "sdst", "videos": str(tmp_path / "vid_feats"), "queries": str(tmp_path / "txt_feats")}
    shutil.copytree(release["videos"], feats["videos"])
    shutil.copytree(release["queries"], feats["queries"])
    ds = {"annotations": release["annotations"], "features": feats, "clip_len": 2.0, "saliency": "qvh",
          "splits": {"train": "train", "select": {"holdout": 0.5}, "report": ["val"]}}
    assert check_dataset("rel", ds)["missing_videos"] == []
    os.remove(f"{feats['videos']}/train00.npz")
    os.remove(f"{feats['queries']}/3.npz")
    x = np.load(f"{feats['videos']}/val01.npz")["visual_feats_interm_pooled"]
    np.savez(f"{feats['videos']}/val01.npz", visual_feats_interm_pooled=x[:2])  # 2 clips: short, and clip ids past
    with pytest.raises(DatasetCheckError) as err:
        check_dataset("rel", ds)
    text = str(err.value)
    assert "1 videos named by the annotations have no file" in text and "(first: train00)" in text
    assert "1 queries named by the annotations have no file" in text and "(first: 3)" in text
    assert "clip counts do not cover their annotated duration" in text and "val01 (2 clips" in text
    assert "relevant_clip_ids past their video's last feature clip" in text and "qid 4" in text


def test_clip_rule_is_an_identity_option_that_keeps_existing_hashes():
    from extract.cache import identity_hash
    from extract.identity import extraction_identity
    from extract.decode import num_clips

    assert [num_clips(d, 2.0) for d in (4.0, 4.9, 5.0, 150.0)] == [2, 2, 3, 75]
    assert [num_clips(d, 2.0, "ceil") for d in (4.0, 4.2, 5.0, 150.0, 150.0000001)] == [2, 3, 3, 75, 75]
    extract = {"frames_per_clip": 4, "image_size": 224, "resize": "official", "vision_layers": [-4, -3, -2, -1],
               "pooling": "attn", "text_layers": [-4, -3, -2, -1], "text_max_len": 40, "gelu": "tanh", "seed": 0}
    ds = {"backbone": "tiny", "checkpoint": None, "clip_len": 2.0}
    default = extraction_identity(ds, extract)
    assert "clip_rule" not in default and extraction_identity({**ds, "clip_rule": "round"}, extract) == default
    ceil = extraction_identity({**ds, "clip_rule": "ceil"}, extract)
    assert ceil == {**default, "clip_rule": "ceil"} and identity_hash(ceil) != identity_hash(default)


def test_a_model_reading_more_levels_than_the_store_holds_is_refused_in_one_line():
    from sdst.config import check_layers_held

    run = {"model": {"name": "sdst_k5", "params": {"levels": [-5, -4, -3, -2, -1], "text_levels": None}}}
    check_layers_held(run, 5, 5, "store S")
    with pytest.raises(ValueError) as err:
        check_layers_held(run, 4, 4, "store S")
    assert "\n" not in str(err.value) and "needs 5 video and 5 text layers; store S holds 4 and 4" in str(err.value)
