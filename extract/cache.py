"""The feature cache: one Zarr v3 store per dataset and extraction configuration.

Layout (pipeline.md, "Zarr 3 feature cache")::

    features.zarr/                 root attrs: identity (the extraction configuration), identity_hash
      videos/<vid>                 float16 (K layers, T clips, Dv), one chunk; attrs written last:
                                   complete, n_clips, clip_len, duration, fps, codec, clamped
      queries/<qid>                float16 (K layers, L tokens, Dt), one chunk; attrs written last:
                                   complete, n_tokens, vid

Query arrays hold only the tokenizer's real tokens ([CLS] ... [SEP]; padding is not stored), so the
attention mask of a query is ``n_tokens`` ones; batches rebuild padding masks from the lengths.
Readers and resuming writers trust an array only when its ``complete`` attribute is set: data is
written first, the attribute last, so a job killed mid-write leaves an array that is recomputed.
Parallel shard jobs write disjoint arrays (never a shared Zarr shard), which is safe.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FP16_MAX = 65504.0


class CacheError(RuntimeError):
    """The store is missing, not initialised, from another configuration, or an array is incomplete."""


class FeatureOverflowError(ValueError):
    """Features outside the float16 range (they would be stored as inf)."""


def canonical_json(obj: Any) -> str:
    """Key-order independent JSON: the form hashed and compared everywhere."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def identity_hash(identity: dict) -> str:
    return hashlib.sha1(canonical_json(identity).encode()).hexdigest()[:12]


def _node_name(key: str) -> str:
    """Zarr node names cannot contain '/' or start with '__'; percent-escape those characters."""
    name = key.replace("%", "%25").replace("/", "%2F")
    return "%5F%5F" + name[2:] if name.startswith("__") else name


class FeatureStore:
    """Access to one store. Open once per process (or DataLoader worker) and reuse: handles are cached."""

    def __init__(self, path: str | Path, mode: str = "r"):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise CacheError(f"{self.path}: no feature store here (run the extraction first)")
        self.root = zarr.open_group(str(self.path), mode=mode)
        attrs = self.root.attrs.asdict()
        if "identity_hash" not in attrs:
            raise CacheError(f"{self.path}: store was never initialised (no identity_hash attribute)")
        self.identity: dict = attrs["identity"]
        self.identity_hash: str = attrs["identity_hash"]
        self._videos = self.root["videos"]
        self._queries = self.root["queries"]
        self._handles: dict[tuple[str, str], Any] = {}

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, identity: dict) -> "FeatureStore":
        """Create the root group once (never from concurrent shard jobs); re-opening checks the identity."""
        import zarr

        path = Path(path)
        digest = identity_hash(identity)
        if (path / "zarr.json").is_file():
            store = cls(path, mode="a")
            if store.identity_hash != digest:
                raise CacheError(
                    f"{path}: holds features of another configuration (hash {store.identity_hash}, "
                    f"expected {digest}); use a new path")
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(path), mode="w")
        root.require_group("videos")
        root.require_group("queries")
        root.attrs.update({"identity": identity, "identity_hash": digest, "format": 1})
        return cls(path, mode="a")

    # -- completeness ------------------------------------------------------------------------------
    def _array(self, group: str, key: str):
        handle = self._handles.get((group, key))
        if handle is None:
            parent = self._videos if group == "videos" else self._queries
            name = _node_name(key)
            if name not in parent:
                return None
            handle = parent[name]
            self._handles[(group, key)] = handle
        return handle

    def _complete(self, group: str, key: str) -> bool:
        try:
            arr = self._array(group, key)
            return arr is not None and bool(arr.attrs.get("complete", False))
        except Exception:  # noqa: BLE001 - unreadable metadata from a killed write = incomplete
            self._handles.pop((group, key), None)
            return False

    def video_complete(self, vid: str) -> bool:
        return self._complete("videos", vid)

    def query_complete(self, qid: str) -> bool:
        return self._complete("queries", qid)

    # -- writing -------------------------------------------------------------------------------
    def _write(self, group: str, key: str, data: np.ndarray, attrs: dict) -> None:
        data = np.asarray(data, dtype=np.float32)
        peak = float(np.abs(data).max()) if data.size else 0.0
        if not np.isfinite(peak) or peak > FP16_MAX:
            raise FeatureOverflowError(
                f"{group}/{key}: feature magnitude {peak:g} does not fit float16 (max {FP16_MAX:g})")
        parent = self._videos if group == "videos" else self._queries
        self._handles.pop((group, key), None)
        arr = parent.create_array(_node_name(key), shape=data.shape, dtype="float16", chunks=data.shape,
                                  compressors=None, overwrite=True)
        arr[...] = data.astype(np.float16)
        arr.attrs.update({**attrs, "complete": True})  # last: marks the array as trustworthy

    def write_video(self, vid: str, feats: np.ndarray, **attrs) -> None:
        """feats (K, T, D)."""
        if feats.ndim != 3:
            raise ValueError(f"video features must be (layers, clips, dim), got shape {feats.shape}")
        self._write("videos", vid, feats, {"n_clips": int(feats.shape[1]), **attrs})

    def write_query(self, qid: str, feats: np.ndarray, **attrs) -> None:
        """feats (K, L, D) for the L real tokens."""
        if feats.ndim != 3:
            raise ValueError(f"query features must be (layers, tokens, dim), got shape {feats.shape}")
        self._write("queries", qid, feats, {"n_tokens": int(feats.shape[1]), **attrs})

    # -- reading -------------------------------------------------------------------------------
    def _read(self, group: str, key: str) -> np.ndarray:
        arr = self._array(group, key)
        if arr is None:
            raise CacheError(f"{self.path}: no {group[:-1]} '{key}' in the cache")
        if not arr.attrs.get("complete", False):
            raise CacheError(f"{self.path}: {group[:-1]} '{key}' is incomplete (extraction interrupted?)")
        fast = self._chunk_file(group, key, arr)
        if fast is not None:
            try:
                data = np.fromfile(fast, dtype="<f2")
                if data.size == int(np.prod(arr.shape)):
                    return data.reshape(arr.shape)
            except OSError:  # e.g. a chunk zarr did not write because it was all fill value
                pass
        return arr[...]

    def _chunk_file(self, group: str, key: str, arr) -> Path | None:
        """The file holding the array's single raw chunk, when the Zarr v3 metadata guarantees that layout
        (one chunk, plain little-endian bytes codec, default '/' key encoding): reading it with numpy skips
        ~1 ms of Zarr machinery per read. Any other layout returns None and is read through Zarr."""
        try:
            meta = arr.metadata
            codecs = meta.codecs
            ok = (getattr(meta, "zarr_format", None) == 3 and tuple(arr.chunks) == tuple(arr.shape)
                  and arr.dtype == np.float16 and len(codecs) == 1 and type(codecs[0]).__name__ == "BytesCodec"
                  and getattr(codecs[0].endian, "value", None) == "little"
                  and type(meta.chunk_key_encoding).__name__ == "DefaultChunkKeyEncoding"
                  and meta.chunk_key_encoding.separator == "/")
        except AttributeError:
            return None
        if not ok:
            return None
        return self.path / group / _node_name(key) / "c" / "/".join("0" * len(arr.shape))

    def read_video(self, vid: str) -> np.ndarray:
        return self._read("videos", vid)

    def read_query(self, qid: str) -> np.ndarray:
        return self._read("queries", qid)

    def video_attrs(self, vid: str) -> dict:
        arr = self._array("videos", vid)
        return {} if arr is None else arr.attrs.asdict()
