"""The feature cache: one Zarr v3 store per dataset and extraction configuration, written as packs.

Layout (format 2; pipeline.md, "Zarr 3 feature cache")::

    features.zarr/                   root attrs: identity (the extraction configuration), identity_hash, format
      packs/<group>-<time>-<pid>-<r> one 1-D float16 Zarr array, one uncompressed chunk (``c/0``): the features
                                     of many videos (group ``videos``) or queries (``queries``) laid end to end;
                                     attrs, written after the data: complete, group, nbytes and the index
                                     {key: {offset, shape, crc32, attrs}}

A video is (K layers, T clips, Dv) and a query (K layers, L tokens, Dt) for its L real tokens (padding is not
stored, so a query's attention mask is ``n_tokens`` ones). A shard job is the only writer of its packs: it
buffers finished items and writes a pack every ``flush_items`` items, ``flush_bytes`` bytes or
``flush_seconds`` seconds (and when it closes), so the number of files grows with jobs and flushes, not with
videos (4 inodes a pack), and a killed job loses at most the work since its last flush. A pack counts only
once its ``complete`` attribute is set, and each item carries its size and CRC-32: an item whose chunk bytes
are missing, short or altered is reported (store, item, pack, what is wrong), never read as data, and
re-extracted by the next shard run (:meth:`FeatureStore.problem`). Every reader goes through this module.
Stores of the old one-array-per-item layout (format 1) are converted in place by :meth:`FeatureStore.create`
(:mod:`extract.cache_format1`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FP16_MAX = 65504.0
FORMAT = 2
GROUPS = ("videos", "queries")
ABSENT = "not in the cache"  # FeatureStore.problem of an item never written (not damaged: nothing to distrust)


class CacheError(RuntimeError):
    """The store is missing, not initialised, from another configuration, or an item is absent or damaged."""


class CacheWriteError(CacheError):
    """A pack could not be written (disk full, permissions); the partial pack was removed."""


class FeatureOverflowError(ValueError):
    """Features outside the float16 range (they would be stored as inf)."""


ITEM = {"videos": "video", "queries": "query"}  # a group's items, in messages


def canonical_json(obj: Any) -> str:
    """Key-order independent JSON: the form hashed and compared everywhere."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def identity_hash(identity: dict) -> str:
    return hashlib.sha1(canonical_json(identity).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Entry:
    pack: str
    offset: int  # in float16 elements from the start of the pack
    shape: tuple
    crc32: int
    attrs: dict

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class _Pack:
    name: str
    chunk: Path | None  # the raw chunk file when the layout is the plain one this module writes, else None
    available: int  # float16 elements present in the chunk file (the expected count when read through zarr)


def _plain_chunk(meta: dict) -> bool:
    """Whether Zarr v3 metadata describes one uncompressed little-endian chunk at ``c/0``."""
    try:
        return (meta["zarr_format"] == 3 and meta["data_type"] == "float16" and len(meta["shape"]) == 1
                and meta["chunk_grid"]["configuration"]["chunk_shape"][0] >= meta["shape"][0]
                and meta["chunk_key_encoding"] in ({"name": "default", "configuration": {"separator": "/"}},
                                                   {"name": "default"})
                and [c["name"] for c in meta["codecs"]] == ["bytes"]
                and meta["codecs"][0].get("configuration", {}).get("endian", "little") == "little")
    except (KeyError, TypeError, IndexError):
        return False


class FeatureStore:
    """Access to one store. Open once per process (or DataLoader worker) and reuse: the index and file handles
    are built once. Writers buffer; call :meth:`close` (or use ``with``) to write what is buffered."""

    def __init__(self, path: str | Path, mode: str = "r", flush_items: int = 1000, flush_bytes: int = 256 << 20,
                 flush_seconds: float = 600.0, _converting: bool = False):
        self.path = Path(path)
        meta = self.path / "zarr.json"
        if not meta.is_file():
            raise CacheError(f"{self.path}: no feature store here (run the extraction first)")
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError) as err:
            raise CacheError(f"{meta}: unreadable store metadata ({err})") from None
        if "identity_hash" not in attrs:
            raise CacheError(f"{self.path}: store was never initialised (no identity_hash attribute)")
        if attrs.get("format", 1) != FORMAT and not _converting:
            raise CacheError(f"{self.path}: store format {attrs.get('format', 1)}, this code reads {FORMAT}; "
                             "`python -m extract init-store` (the workflow's init_store job) converts it")
        self.identity: dict = attrs["identity"]
        self.identity_hash: str = attrs["identity_hash"]
        self.mode = mode
        self.flush_items, self.flush_bytes, self.flush_seconds = flush_items, flush_bytes, flush_seconds
        self._index: dict[str, dict[str, Entry]] = {g: {} for g in GROUPS}
        self._damaged: dict[str, dict[str, str]] = {g: {} for g in GROUPS}
        self._packs: dict[str, _Pack] = {}
        self._fds: dict[str, int] = {}
        self._pending: dict[str, list] = {g: [] for g in GROUPS}
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self._scan()

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, identity: dict, **flush) -> "FeatureStore":
        """Create the root once (never from concurrent shard jobs); re-opening checks the identity and converts
        a format-1 store in place (items already converted are kept if a conversion was interrupted)."""
        from extract.locking import exclusive

        path = Path(path)
        # concurrent creators (two commands on one folder) take turns: the second finds the store made
        with exclusive(path.with_name(path.name + ".lock"), f"store {path}", wait=True):
            return cls._create(path, identity, **flush)

    @classmethod
    def _create(cls, path: Path, identity: dict, **flush) -> "FeatureStore":
        import zarr

        digest = identity_hash(identity)
        if (path / "zarr.json").is_file():
            root = zarr.open_group(str(path), mode="a")
            found = root.attrs.get("identity_hash")
            if found is not None and found != digest:
                raise CacheError(f"{path}: holds features of another configuration (hash {found}, expected "
                                 f"{digest}); use a new path")
            if found is not None and root.attrs.get("format", 1) != FORMAT:
                from extract.cache_format1 import convert_format1

                root.require_group("packs")
                convert_format1(path, root, cls(path, mode="a", _converting=True), FORMAT)
            if found is not None:
                return cls(path, mode="a", **flush)
        path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(path), mode="w")
        root.require_group("packs")
        root.attrs.update({"identity": identity, "identity_hash": digest, "format": FORMAT})
        return cls(path, mode="a", **flush)

    # -- the index -----------------------------------------------------------------------------
    def _scan(self) -> None:
        packs = self.path / "packs"
        names = sorted(n for n in os.listdir(packs) if n.split("-")[0] in GROUPS) if packs.is_dir() else []
        for name in names:  # sorted by creation time: a later pack's copy of an item wins
            try:
                meta = json.loads((packs / name / "zarr.json").read_text())
            except (OSError, ValueError):  # a pack whose metadata was being written when its job died
                continue
            attrs = meta.get("attributes", {})
            if not attrs.get("complete") or attrs.get("group") not in GROUPS:
                continue
            self._add_pack(name, meta, attrs)

    def _add_pack(self, name: str, meta: dict, attrs: dict) -> None:
        expected = int(meta["shape"][0])
        chunk = self.path / "packs" / name / "c" / "0"
        if _plain_chunk(meta):
            try:
                available = min(chunk.stat().st_size // 2, expected)
            except OSError:
                available = 0
            self._packs[name] = _Pack(name, chunk, available)
        else:
            self._packs[name] = _Pack(name, None, expected)  # read through zarr; the CRC still checks it
        group = attrs["group"]
        for key, e in attrs["index"].items():
            entry = Entry(name, int(e["offset"]), tuple(e["shape"]), int(e["crc32"]), e.get("attrs", {}))
            problem = self._shallow_problem(entry)
            if problem is None:
                self._index[group][key] = entry
                self._damaged[group].pop(key, None)
            else:  # the latest copy is the item (an earlier one may be of an older source): damaged, not stale
                self._index[group].pop(key, None)
                self._damaged[group][key] = problem

    def _shallow_problem(self, entry: Entry) -> str | None:
        pack = self._packs[entry.pack]
        if entry.offset + entry.size <= pack.available:
            return None
        where = f"pack packs/{entry.pack}"
        if pack.available == 0 and pack.chunk is not None and not pack.chunk.exists():
            return f"{where}: its chunk file {pack.chunk.relative_to(self.path)} is missing"
        return (f"{where}: its chunk file holds {pack.available * 2} bytes, the item needs bytes "
                f"{entry.offset * 2}-{(entry.offset + entry.size) * 2} (truncated)")

    def keys(self, group: str) -> list[str]:
        """Keys of the items present (size-checked; contents are checked when read)."""
        return sorted(self._index[group])

    def damaged(self, group: str) -> dict[str, str]:
        """{key: what is wrong} for the items whose only copy is missing or truncated (found without reading
        the data; :meth:`verify` also reads every item and checks its CRC-32)."""
        return dict(self._damaged[group])

    def digest(self, group: str, keys: Iterable[str]) -> str:
        """A fingerprint of the stored content of ``keys`` (their CRC-32s and shapes, from the index; absent keys
        count as absent): equal digests, equal features."""
        h = hashlib.sha1()
        for key in sorted(keys):
            e = self._index[group].get(key)
            h.update(canonical_json([key, None if e is None else [e.crc32, list(e.shape)]]).encode())
        return h.hexdigest()[:16]

    def entry(self, group: str, key: str) -> Entry | None:
        return self._index[group].get(key)

    def problem(self, group: str, key: str, deep: bool = False) -> str | None:
        """None when the item is present and sound, else what is wrong. ``deep`` also reads it and checks its
        CRC-32 (what a resuming shard does before trusting an item)."""
        entry = self._index[group].get(key)
        if entry is None:
            return self._damaged[group].get(key, ABSENT)
        if deep:
            try:
                self._load(group, key, entry)
            except CacheError as err:
                return str(err)
        return None

    def video_complete(self, vid: str) -> bool:
        return self.problem("videos", vid) is None

    def query_complete(self, qid: str) -> bool:
        return self.problem("queries", qid) is None

    def video_attrs(self, vid: str) -> dict:
        entry = self._index["videos"].get(vid)
        return {} if entry is None else dict(entry.attrs)

    # -- writing -------------------------------------------------------------------------------
    def _write(self, group: str, key: str, data: np.ndarray, attrs: dict) -> None:
        if self.mode == "r":
            raise CacheError(f"{self.path}: opened read-only")
        data = np.asarray(data, dtype=np.float32)
        peak = float(np.abs(data).max()) if data.size else 0.0
        if not np.isfinite(peak) or peak > FP16_MAX:
            raise FeatureOverflowError(
                f"{group}/{key}: feature magnitude {peak:g} does not fit float16 (max {FP16_MAX:g})")
        half = np.ascontiguousarray(data, dtype="<f2")
        self._pending[group].append((key, half, attrs))
        self._pending_bytes += half.nbytes
        n = sum(len(v) for v in self._pending.values())
        if (n >= self.flush_items or self._pending_bytes >= self.flush_bytes
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    def write_video(self, vid: str, feats: np.ndarray, **attrs) -> None:
        """feats (K, T, D); buffered until the next flush."""
        if feats.ndim != 3:
            raise ValueError(f"video features must be (layers, clips, dim), got shape {feats.shape}")
        self._write("videos", vid, feats, {"n_clips": int(feats.shape[1]), **attrs})

    def write_query(self, qid: str, feats: np.ndarray, **attrs) -> None:
        """feats (K, L, D) for the L real tokens; buffered until the next flush."""
        if feats.ndim != 3:
            raise ValueError(f"query features must be (layers, tokens, dim), got shape {feats.shape}")
        self._write("queries", qid, feats, {"n_tokens": int(feats.shape[1]), **attrs})

    def flush(self) -> None:
        """Write one pack per group holding the buffered items: data first, the index and ``complete`` last."""
        import zarr

        for group in GROUPS:
            items = self._pending[group]
            if not items:
                continue
            index, offset = {}, 0
            for key, half, attrs in items:
                index[key] = {"offset": offset, "shape": list(half.shape),
                              "crc32": zlib.crc32(half), "attrs": attrs}
                offset += half.size
            data = np.concatenate([h.ravel() for _, h, _ in items]) if offset else np.zeros(0, "<f2")
            name = f"{group}-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
            attrs = {"group": group, "nbytes": int(data.nbytes), "index": index, "complete": True}
            try:
                packs = zarr.open_group(str(self.path / "packs"), mode="a")
                arr = packs.create_array(name, shape=(offset,), dtype="float16", chunks=(max(offset, 1),),
                                         compressors=None, fill_value=0.0, config={"write_empty_chunks": True})
                if offset:
                    arr[...] = data
                arr.attrs.update(attrs)  # last: the pack (and every item in it) becomes trustworthy
                meta = json.loads((self.path / "packs" / name / "zarr.json").read_text())
            except OSError as err:  # disk full, quota, permissions: no half-written pack stays behind
                shutil.rmtree(self.path / "packs" / name, ignore_errors=True)
                raise CacheWriteError(f"{self.path / 'packs' / name}: cannot write {len(items)} {group} "
                                      f"({data.nbytes / 2**20:.1f} MiB): {err.strerror or err}; free space or "
                                      "fix permissions, then run again (finished packs are kept)") from None
            self._add_pack(name, meta, attrs)
            items.clear()
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self.mode != "r":
            self.flush()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def _load(self, group: str, key: str, entry: Entry) -> np.ndarray:
        pack = self._packs[entry.pack]
        what = f"{self.path}: {ITEM[group]} '{key}' (pack packs/{entry.pack})"
        if pack.chunk is not None:
            out = np.empty(entry.size, "<f2")
            fd = self._fds.get(entry.pack)
            try:
                if fd is None:
                    if len(self._fds) >= 256:
                        os.close(self._fds.pop(next(iter(self._fds))))
                    fd = self._fds[entry.pack] = os.open(pack.chunk, os.O_RDONLY)
                got = os.preadv(fd, [memoryview(out).cast("B")], entry.offset * 2)
            except OSError as err:
                raise CacheError(f"{what}: cannot read its chunk file ({err})") from None
            if got != out.nbytes:
                raise CacheError(f"{what}: chunk file ends after {got} of the item's {out.nbytes} bytes "
                                 "(truncated)")
        else:
            import zarr

            out = np.asarray(zarr.open_array(str(self.path / "packs" / entry.pack), mode="r")
                             [entry.offset:entry.offset + entry.size], dtype="<f2")
        if zlib.crc32(out) != entry.crc32:
            raise CacheError(f"{what}: checksum mismatch, the stored bytes were altered")
        return out.reshape(entry.shape)

    def _read(self, group: str, key: str) -> np.ndarray:
        entry = self._index[group].get(key)
        if entry is None:
            raise CacheError(f"{self.path}: {ITEM[group]} '{key}': {self.problem(group, key)}")
        return self._load(group, key, entry)

    def read_video(self, vid: str) -> np.ndarray:
        """(K, T, Dv) float16, verified."""
        return self._read("videos", vid)

    def read_query(self, qid: str) -> np.ndarray:
        """(K, L, Dt) float16, verified."""
        return self._read("queries", qid)

    def read_many(self, group: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Several items, read in file order (what a preload does)."""
        keys = list(dict.fromkeys(keys))
        order = sorted(keys, key=lambda k: (e.pack, e.offset) if (e := self._index[group].get(k)) else ("", 0))
        return {k: self._read(group, k) for k in order}

    def verify(self) -> dict[str, dict[str, str]]:
        """Read every item and check it: {group: {key: what is wrong}} for the damaged ones."""
        bad = {g: dict(self._damaged[g]) for g in GROUPS}
        for group in GROUPS:
            for key in self.keys(group):
                problem = self.problem(group, key, deep=True)
                if problem is not None:
                    bad[group][key] = problem
        return bad
