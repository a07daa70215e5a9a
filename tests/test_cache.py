"""The Zarr feature store: round trip, completeness written last, overflow, identity checks."""

from __future__ import annotations

import numpy as np
import pytest

from extract.cache import CacheError, FeatureOverflowError, FeatureStore, identity_hash


def test_round_trip_and_completeness(tmp_path):
    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    feats = np.random.default_rng(0).normal(size=(4, 7, 16)).astype(np.float32)
    store.write_video("vid/with:odd.chars", feats, fps=25.0)
    store.write_query("12", feats[:, :5], vid="vid/with:odd.chars")
    again = FeatureStore(tmp_path / "f.zarr")
    assert again.video_complete("vid/with:odd.chars") and again.query_complete("12")
    np.testing.assert_allclose(again.read_video("vid/with:odd.chars"), feats, rtol=1e-3, atol=1e-3)
    assert again.read_video("vid/with:odd.chars").dtype == np.float16
    assert again.video_attrs("vid/with:odd.chars")["n_clips"] == 7
    assert not again.video_complete("other")


def test_array_without_complete_flag_is_not_trusted(tmp_path):
    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    # what a job killed between writing data and the attribute leaves behind
    arr = store.root["videos"].create_array("v", shape=(1, 2, 3), dtype="float16")
    arr[...] = 1.0
    reopened = FeatureStore(tmp_path / "f.zarr")
    assert not reopened.video_complete("v")
    with pytest.raises(CacheError, match="incomplete"):
        reopened.read_video("v")


def test_float16_overflow_is_an_error(tmp_path):
    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    with pytest.raises(FeatureOverflowError, match="float16"):
        store.write_video("v", np.full((1, 2, 3), 7e4, np.float32))
    assert not store.video_complete("v")


def test_identity_is_checked(tmp_path):
    FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    assert FeatureStore.create(tmp_path / "f.zarr", {"a": 1}).identity_hash == identity_hash({"a": 1})
    with pytest.raises(CacheError, match="another configuration"):
        FeatureStore.create(tmp_path / "f.zarr", {"a": 2})
    with pytest.raises(CacheError, match="no feature store"):
        FeatureStore(tmp_path / "nothing.zarr")


def test_direct_chunk_read_equals_zarr_and_falls_back(tmp_path):
    import zarr

    store = FeatureStore.create(tmp_path / "f.zarr", {"a": 1})
    feats = np.random.default_rng(1).normal(size=(3, 11, 7)).astype(np.float32)
    store.write_video("v", feats)
    arr = zarr.open_array(str(tmp_path / "f.zarr" / "videos" / "v"))
    chunk = store._chunk_file("videos", "v", store._array("videos", "v"))
    assert chunk is not None and chunk.is_file()  # the fast path applies to what the store writes
    np.testing.assert_array_equal(FeatureStore(tmp_path / "f.zarr").read_video("v"), arr[...])
    chunk.unlink()  # a chunk zarr skipped (all fill value) is read through zarr: zeros, no error
    np.testing.assert_array_equal(FeatureStore(tmp_path / "f.zarr").read_video("v"), np.zeros((3, 11, 7)))
