"""The features sketch (sdst.sketch): another machine's extraction of the same inputs is recognised, other features
are not; a weight-free run record (sdst.archive) trained on the first stands for a run on the second."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_synthetic_cache, synthetic_run
from extract.cache import FeatureStore
from sdst.archive import identity, mismatch, piece_code, save
from sdst.sketch import SKETCH_RTOL, features_close, features_sketch
from sdst.train import code_version, train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_synthetic_cache(tmp_path_factory.mktemp("sketch"), n_train=12, n_val=4)


def rewritten(summary: str, root, change) -> str:
    """A copy of the store ``summary`` names with every item passed through ``change(group, key, x)``: another
    extraction of it. Returns the copy's summary."""
    src = FeatureStore(json.loads(open(summary).read())["store"], mode="r")
    store = FeatureStore.create(root / "features.zarr", {"synthetic": 0})
    for vid in src.keys("videos"):
        store.write_video(vid, change("videos", vid, src.read_video(vid)))
    for qid in src.keys("queries"):
        store.write_query(qid, change("queries", qid, src.read_query(qid)))
    store.close()
    out = root / "summary.json"
    out.write_text(json.dumps({"store": str(root / "features.zarr"), "failed_videos": []}))
    return str(out)


def another_extraction(group, key, x):
    """What another order of float additions did to demo_hard's features (README "Configuration and re-runs": 1e-8
    of the RMS on average, at most 7.2e-4): each value moved by 1e-6 of its layer's RMS on average."""
    rng = np.random.default_rng(len(key) + sum(map(ord, key)))
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=(1, 2), keepdims=True))
    return (x + rng.normal(size=x.shape) * 1.25e-6 * rms).astype(np.float32)


def test_the_sketch_holds_each_items_mean_and_rms_per_layer(cache):
    sketch = features_sketch(cache["summary"])
    store = FeatureStore(cache["store"], mode="r")
    assert sorted(sketch["videos"]) == store.keys("videos") and sorted(sketch["queries"]) == store.keys("queries")
    x = store.read_video("train000").astype(np.float64)  # (layers, clips, dim)
    for layer, (mean, rms) in enumerate(sketch["videos"]["train000"]):
        assert mean == pytest.approx(x[layer].mean(), rel=1e-6)
        assert rms == pytest.approx(np.sqrt((x[layer] ** 2).mean()), rel=1e-6)


def test_another_extraction_of_the_same_features_is_close_and_other_features_are_not(cache, tmp_path):
    sketch = features_sketch(cache["summary"])
    assert features_close(sketch, features_sketch(rewritten(cache["summary"], tmp_path / "a", another_extraction)))

    def one_video_replaced(group, key, x):
        return x[:, ::-1].copy() * 1.5 if key == "train003" else x

    def one_layer_shifted(group, key, x):
        return x + np.float32(0.01) * (np.arange(x.shape[0]) == 2)[:, None, None] if group == "queries" else x

    for name, change in (("replaced", one_video_replaced), ("shifted", one_layer_shifted)):
        assert not features_close(sketch, features_sketch(rewritten(cache["summary"], tmp_path / name, change))), name
    fewer = {**sketch, "queries": {k: v for k, v in sketch["queries"].items() if k != "3"}}
    assert not features_close(sketch, fewer) and not features_close(fewer, sketch)
    off = json.loads(json.dumps(sketch))
    off["videos"]["train000"][1][1] *= 1 + 3 * SKETCH_RTOL
    assert not features_close(sketch, off)


def test_a_record_stands_for_the_run_on_another_machines_extraction_only(cache, tmp_path):
    """The record keeps the sketch of the features its run was trained on; where this machine's features have
    another digest, the record stands for the run when their sketches agree, and never otherwise."""
    run = synthetic_run(cache["annotations"], epochs=1)
    out = tmp_path / "results" / "syn" / "sdst" / "seed0"
    train(run, cache["summary"], out, progress=False)
    entry, kind = save(out, tmp_path / "records", outputs=True, features=cache["summary"])
    assert kind == "outputs" and (entry / "features.json").is_file()
    here = identity(run, code_version("sdst"), "another digest")
    code = code_version(run["model"]["arch"])
    assert piece_code("sdst.train", run["model"]["arch"]) == code
    same = rewritten(cache["summary"], tmp_path / "same", another_extraction)
    assert mismatch(entry, here, "train", code, sketch=lambda: features_sketch(same)) is None
    other = rewritten(cache["summary"], tmp_path / "other", lambda g, k, x: x * np.float32(1.01))
    assert mismatch(entry, here, "train", code, sketch=lambda: features_sketch(other)) == \
        "archived with another features"
    assert mismatch(entry, here, "train", code) == "archived with another features"  # no sketch asked for
    (entry / "features.json").write_text("{}\n")  # a damaged sketch is no evidence
    assert mismatch(entry, here, "train", code, sketch=lambda: features_sketch(same)) == \
        "archived with another features"
    (tmp_path / "s.json").write_text(json.dumps({"features_digest": "ab12", "store": cache["store"]}))
    with pytest.raises(ValueError, match="features digest ab12, but .* was trained on None"):
        save(out, tmp_path / "records", outputs=True, features=tmp_path / "s.json")
