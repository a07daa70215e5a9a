"""A sketch of a feature store: enough to tell another machine's extraction of the same inputs from other features.

Two machines extracting the same videos and queries with the same code and configuration store slightly different
features (their arithmetic sums in another order), so their features digests (extract.stores) differ. A sketch keeps,
per video and query and per cached layer, the mean and the root mean square of its features; ``features_close``
takes two sketches within ``SKETCH_RTOL`` of the RMS for the same features. Measured on demo_hard (README "Configuration
and re-runs"): one and two torch threads give features whose single values differ by up to 7.2e-4 of the RMS and whose
sketches differ by at most 9.4e-8 of it. A replaced video, an edited query or another layer moves a sketch far
more. The weight-free run records (sdst.archive) keep the sketch of the features their run was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SKETCH_RTOL = 1e-4


def features_sketch(summary: str | Path) -> dict:
    """Per video and query of the store the extraction summary names, per cached layer: the mean and the root mean
    square of its features (7 digits)."""
    from extract.cache import FeatureStore
    from extract.reader import store_path

    store = FeatureStore(store_path(json.loads(Path(summary).read_text())["store"]), mode="r")
    out: dict = {}
    for group in ("videos", "queries"):
        out[group] = {}
        for key in store.keys(group):
            x = (store.read_video(key) if group == "videos" else store.read_query(key)).astype(np.float64)
            x = x.reshape(x.shape[0], -1)
            out[group][key] = [[float(f"{v:.7g}") for v in (m, r)]
                               for m, r in zip(x.mean(1), np.sqrt((x ** 2).mean(1)))]
    return out


def features_close(a: dict, b: dict, rtol: float = SKETCH_RTOL) -> bool:
    """Whether two sketches are of the same items, each layer's mean and RMS within ``rtol`` of its RMS."""
    if a.keys() != b.keys() or any(a[g].keys() != b[g].keys() for g in a):
        return False
    for group, items in a.items():
        for key, layers in items.items():
            other = b[group][key]
            if len(layers) != len(other):
                return False
            for (m1, r1), (m2, r2) in zip(layers, other):
                tol = rtol * max(r1, r2)
                if abs(m1 - m2) > tol or abs(r1 - r2) > tol:
                    return False
    return True
