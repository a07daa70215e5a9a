"""Read a feature store back without knowing Zarr::

    from extract.reader import open_features

    feats = open_features("out")            # a `python -m extract videos` folder, a pipeline cache folder
    for vid, x in feats:                     # or the features.zarr itself
        ...                                  # x: float32 (layers, clips, dim)
    x = feats.video("vid1", layer=-1)        # (clips, dim): one cached layer, by backbone layer number
    t = feats.clip_times("vid1")             # (clips, 2): start and end of each clip in seconds
    q = feats.query("7", layer=-1)           # (tokens, dim) of query 7 (no padding stored)

Layers are named as in the configuration: ``-1`` is the backbone's last block, ``-2`` the one before, and so
on; only the cached ones (``feats.vision_layers``) can be read. Every read is
verified by :mod:`extract.cache` (size and CRC-32) and raises :class:`extract.cache.CacheError` on damage.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from extract.cache import ITEM, CacheError, FeatureStore


def store_path(path: str | Path) -> Path:
    """The features.zarr of a store folder (or the store itself)."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return path
    if (path / "features.zarr" / "zarr.json").is_file():
        return path / "features.zarr"
    raise CacheError(f"{path}: neither a feature store nor a folder holding features.zarr")


class Features:
    """One store, opened once; see the module docstring."""

    def __init__(self, path: str | Path, warn: bool = True):
        self.store = FeatureStore(store_path(path), mode="r")
        bad = [f"{ITEM[g]} '{k}'" for g, items in self.damaged.items() for k in sorted(items)]
        if bad and warn:  # listed by .damaged; .videos and .queries hold the sound items only
            warnings.warn(f"{self.store.path}: {len(bad)} damaged item(s) left out ({', '.join(bad[:5])}"
                          f"{', ...' if len(bad) > 5 else ''}); `.damaged` says what is wrong with each; "
                          "`python -m extract verify` marks them for re-extraction", stacklevel=3)
        self.identity: dict = self.store.identity
        self.clip_len: float = float(self.identity["clip_len"])
        self.vision_layers: list[int] = list(self.identity["vision_layers"])
        self.text_layers: list[int] = list(self.identity["text_layers"])

    @property
    def damaged(self) -> dict[str, dict[str, str]]:
        """{"videos"|"queries": {id: what is wrong}}: items whose data is missing or truncated (found when the store
        was opened); items whose bytes were altered fail when read (CacheError)."""
        return {g: self.store.damaged(g) for g in ("videos", "queries")}

    # -- videos --------------------------------------------------------------------------------
    @property
    def videos(self) -> list[str]:
        return self.store.keys("videos")

    def __len__(self) -> int:
        return len(self.videos)

    def __contains__(self, vid: str) -> bool:
        return self.store.entry("videos", vid) is not None

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(video id, float32 (layers, clips, dim)) in id order."""
        for vid in self.videos:
            yield vid, self.video(vid)

    def video(self, vid: str, layer: int | None = None) -> np.ndarray:
        """float32 (layers, clips, dim), or (clips, dim) for one ``layer``."""
        x = self.store.read_video(vid)
        return np.asarray(x if layer is None else x[self.layer_index(layer, "vision")], dtype=np.float32)

    def info(self, vid: str) -> dict:
        """What was recorded with the video: n_clips, duration (s), fps, codec, file, clamped."""
        if vid not in self:
            raise KeyError(f"{self.store.path}: no video '{vid}' ({self.store.problem('videos', vid)})")
        return self.store.video_attrs(vid)

    def duration(self, vid: str) -> float:
        return float(self.info(vid)["duration"])

    def clip_times(self, vid: str) -> np.ndarray:
        """(clips, 2) seconds: clip i spans [i * clip_len, (i + 1) * clip_len), the last one cut at the duration
        (extract.decode.clip_frame_times samples its frames inside that span)."""
        info = self.info(vid)
        starts = np.arange(int(info["n_clips"])) * self.clip_len
        return np.stack([starts, np.minimum(starts + self.clip_len, max(float(info["duration"]), 0.0))], axis=1)

    # -- queries -------------------------------------------------------------------------------
    @property
    def queries(self) -> list[str]:
        return self.store.keys("queries")

    def query(self, qid: str | int, layer: int | None = None) -> np.ndarray:
        """float32 (layers, tokens, dim), or (tokens, dim) for one ``layer``: the tokens encoded, [CLS] first."""
        x = self.store.read_query(str(qid))
        return np.asarray(x if layer is None else x[self.layer_index(layer, "text")], dtype=np.float32)

    def query_info(self, qid: str | int) -> dict:
        entry = self.store.entry("queries", str(qid))
        if entry is None:
            raise KeyError(f"{self.store.path}: no query '{qid}' ({self.store.problem('queries', str(qid))})")
        return dict(entry.attrs)

    def iter_queries(self) -> Iterator[tuple[str, np.ndarray]]:
        for qid in self.queries:
            yield qid, self.query(qid)

    # -- layers --------------------------------------------------------------------------------
    def layer_index(self, layer: int, kind: str = "vision") -> int:
        """Position in the cached arrays of a configured layer name (-1, -2, ...)."""
        cached = self.vision_layers if kind == "vision" else self.text_layers
        if layer in cached:
            return cached.index(layer)
        raise KeyError(f"{self.store.path}: {kind} layer {layer} is not cached (cached: {cached}); "
                       f"extract with --layers including it")


def open_features(path: str | Path, warn: bool = True) -> Features:
    """``warn``: a warning names the damaged items found when opening (see :attr:`Features.damaged`)."""
    return Features(path, warn)
