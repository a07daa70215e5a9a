"""The Zarr feature store: packed round trip, completeness written last, verification of every read (deleted,
truncated, altered chunks), flushing, overflow, identity checks, conversion of the old layout."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, make_synthetic_cache
from extract.cache import CacheError, FeatureOverflowError, FeatureStore, identity_hash


def _feats(seed, shape=(4, 7, 16)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _packs(path):
    return sorted(p for p in (path / "packs").iterdir() if p.is_dir())


def test_round_trip_in_packs_readable_with_zarr(tmp_path):
    import zarr

    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    feats = _feats(0)
    store.write_video("vid/with:odd.chars", feats, fps=25.0)
    store.write_video("__second", feats[:, :3])
    store.write_query("12", feats[:, :5], vid="vid/with:odd.chars")
    assert not FeatureStore(tmp_path / "f.zarr").video_complete("__second")  # buffered, not yet written
    store.close()
    again = FeatureStore(tmp_path / "f.zarr")
    assert again.video_complete("vid/with:odd.chars") and again.query_complete("12")
    np.testing.assert_allclose(again.read_video("vid/with:odd.chars"), feats, rtol=1e-3, atol=1e-3)
    assert again.read_video("vid/with:odd.chars").dtype == np.float16
    assert again.video_attrs("vid/with:odd.chars") == {"n_clips": 7, "fps": 25.0}
    assert again.keys("videos") == ["__second", "vid/with:odd.chars"] and not again.video_complete("other")
    # one pack per group; a pack is a plain Zarr array: its index locates each item
    packs = _packs(tmp_path / "f.zarr")
    assert [p.name.split("-")[0] for p in packs] == ["queries", "videos"]
    arr = zarr.open_array(str(packs[1]), mode="r")
    e = arr.attrs["index"]["__second"]
    np.testing.assert_array_equal(arr[e["offset"]:e["offset"] + 4 * 3 * 16].reshape(e["shape"]),
                                  again.read_video("__second"))


def test_flushes_bound_the_files_and_a_later_copy_wins(tmp_path):
    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1}, flush_items=2)
    for i in range(5):
        store.write_video(f"v{i}", _feats(i))
    assert len(_packs(tmp_path / "f.zarr")) == 2  # 4 items flushed, 1 buffered
    store.write_video("v0", _feats(99))  # re-extracted: the newer pack's copy is read
    store.close()
    assert len(_packs(tmp_path / "f.zarr")) == 3
    files = [p for p in (tmp_path / "f.zarr").rglob("*")]
    assert len(files) == 3 * 4 + 3  # 4 inodes a pack (dir, zarr.json, c/, c/0); packs/, its and the root's zarr.json
    np.testing.assert_allclose(FeatureStore(tmp_path / "f.zarr").read_video("v0"), _feats(99), atol=1e-2)


def test_pack_without_complete_flag_is_not_trusted(tmp_path):
    with FeatureStore.create(tmp_path / "f.zarr", {"a": 1}) as store:
        store.write_video("v", _feats(0))
    meta_path = _packs(tmp_path / "f.zarr")[0] / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["complete"]  # what a job killed between the data and the index leaves
    meta_path.write_text(json.dumps(meta))
    reopened = FeatureStore(tmp_path / "f.zarr")
    assert not reopened.video_complete("v")
    with pytest.raises(CacheError, match="'v': not in the cache"):
        reopened.read_video("v")
    meta_path.write_text("{")  # metadata cut short: ignored the same way
    assert not FeatureStore(tmp_path / "f.zarr").video_complete("v")


def _damaged_store(tmp_path):
    """Three packs of two videos each: the first pack's chunk deleted, the second truncated in its second
    item, one byte of the third altered."""
    path = tmp_path / "f.zarr"
    with FeatureStore.create(path, {"a": 1}, flush_items=2) as store:
        for i in range(6):
            store.write_video(f"v{i}", _feats(i))
    packs = [p / "c" / "0" for p in _packs(path)]
    packs[0].unlink()
    data = packs[1].read_bytes()
    packs[1].write_bytes(data[: len(data) - 10])
    data = bytearray(packs[2].read_bytes())
    data[100] ^= 0xFF
    packs[2].write_bytes(bytes(data))
    return path, [p.parent.parent.name for p in packs]


def test_deleted_truncated_and_altered_chunks_are_never_read_as_data(tmp_path):
    path, names = _damaged_store(tmp_path)
    store = FeatureStore(path)
    # deleted / truncated: known at open (sizes); the intact first item of the truncated pack still reads
    assert not store.video_complete("v0") and not store.video_complete("v1") and not store.video_complete("v3")
    assert "missing" in store.problem("videos", "v0") and "truncated" in store.problem("videos", "v3")
    np.testing.assert_allclose(store.read_video("v2"), _feats(2), atol=1e-2)
    for vid, what in (("v0", "missing"), ("v3", "truncated"), ("v4", "checksum mismatch")):
        with pytest.raises(CacheError) as err:
            store.read_video(vid)
        message = str(err.value)  # names the store, the item, its pack and what is wrong
        assert str(path) in message and f"'{vid}'" in message and what in message
        assert f"packs/{names[int(vid[1]) // 2]}" in message
    # altered bytes of the same size: found when read (CRC-32), by a deep check and by verify()
    assert store.video_complete("v4") and "checksum" in store.problem("videos", "v4", deep=True)
    assert sorted(store.verify()["videos"]) == ["v0", "v1", "v3", "v4"]
    proc = subprocess.run([sys.executable, "-m", "extract", "verify", "--store", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "DAMAGED video 'v4'" in proc.stdout and "4 damaged" in proc.stdout


def test_training_data_refuses_a_damaged_cache_naming_the_item(tmp_path):
    from extract.annotations import load_annotations
    from sdst.data import FeatureDataset

    cache = make_synthetic_cache(tmp_path, n_train=6, n_val=2)
    queries = load_annotations(cache["annotations"]["train"])
    assert len(FeatureDataset(queries, cache["store"], 2.0, "window", preload=True)) == 6
    chunk = next(p for p in _packs(tmp_path / "features.zarr") if p.name.startswith("videos")) / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-2])  # the last video written loses its last value
    with pytest.raises(CacheError, match=r"video 'val001'.*truncated"):
        FeatureDataset(load_annotations(cache["annotations"]["val"]), cache["store"], 2.0, "window")
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0x40  # the first video's bytes altered: caught when read, lazily or by a preload
    chunk.write_bytes(bytes(data))
    lazy = FeatureDataset(queries, cache["store"], 2.0, "window")
    with pytest.raises(CacheError, match=r"video 'train000'.*checksum mismatch"):
        lazy[0]
    with pytest.raises(CacheError, match=r"video 'train000'.*checksum mismatch"):
        FeatureDataset(queries, cache["store"], 2.0, "window", preload=True)


def test_float16_overflow_is_an_error(tmp_path):
    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    with pytest.raises(FeatureOverflowError, match="float16"):
        store.write_video("v", np.full((1, 2, 3), 7e4, np.float32))
    store.close()
    assert not store.video_complete("v") and not _packs(tmp_path / "f.zarr")


def test_identity_is_checked(tmp_path):
    FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    assert FeatureStore.create(tmp_path / "f.zarr", {"a": 1}).identity_hash == identity_hash({"a": 1})
    with pytest.raises(CacheError, match="another configuration"):
        FeatureStore.create(tmp_path / "f.zarr", {"a": 2})
    with pytest.raises(CacheError, match="no feature store"):
        FeatureStore(tmp_path / "nothing.zarr")


def test_old_one_array_per_item_store_is_converted_in_place(tmp_path):
    """Format 1 (before packs): videos/<escaped vid>, queries/<qid>, each one Zarr array, 'complete' last."""
    import zarr

    path = tmp_path / "f.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"identity": {"a": 1}, "identity_hash": identity_hash({"a": 1}), "format": 1})
    old = {"a/b": _feats(1), "__x": _feats(2), "half-written": _feats(3)}
    for name, key in (("a%2Fb", "a/b"), ("%5F%5Fx", "__x"), ("half-written", "half-written")):
        arr = root.require_group("videos").create_array(name, shape=old[key].shape, dtype="float16")
        arr[...] = old[key].astype(np.float16)
        if key != "half-written":
            arr.attrs.update({"n_clips": 7, "fps": 30.0, "complete": True})
    q = root.require_group("queries").create_array("5", shape=(4, 3, 16), dtype="float16")
    q[...] = 1.0
    q.attrs.update({"n_tokens": 3, "vid": "a/b", "complete": True})
    with pytest.raises(CacheError, match="format 1"):
        FeatureStore(path)
    store = FeatureStore.create(path, {"a": 1})
    assert store.keys("videos") == ["__x", "a/b"] and store.keys("queries") == ["5"]
    np.testing.assert_array_equal(store.read_video("a/b"), old["a/b"].astype(np.float16))
    assert store.video_attrs("__x") == {"n_clips": 7, "fps": 30.0}
    assert store.query_complete("5") and not (path / "videos").exists()
