"""Datasets over the feature cache: one item per (video, query) pair, padded batches with masks.

The store is opened once per process (each DataLoader worker opens its own) and array handles are reused
(pipeline.md: 1.35 ms/item instead of 3.0). ``preload=True`` reads every needed array into RAM once.
Targets per query:
  * spans: GT windows as (centre, width) in [0, 1] of the feature timeline (n_clips * clip_len seconds);
  * saliency per clip: QVHighlights — the mean of the 3 annotators' 0-4 scores of the 2-s clip under the
    clip's centre (0 outside the relevant clips); Charades-STA/TACoS — 1 inside a window, else 0 (§B).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from extract.annotations import QVH_CLIP, Query, load_annotations



def holdout_split(queries: list[Query], fraction: float) -> tuple[list[Query], list[Query]]:
    """(train, held-out) by a stable hash of the video id, so a video never lands in both."""
    def held(vid: str) -> bool:
        return int(hashlib.sha1(vid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction

    return [q for q in queries if not held(q.vid)], [q for q in queries if held(q.vid)]


def split_queries(data_cfg: dict) -> dict[str, list[Query]]:
    """Queries of every split a run needs: ``train``, ``select`` and each reported split."""
    ann = data_cfg["annotations"]
    splits = data_cfg["splits"]

    def load(name: str, labels: bool = True) -> list[Query]:
        if name not in ann:
            raise ValueError(f"dataset {data_cfg['name']}: split {name!r} has no annotation file "
                             f"(annotations: {sorted(ann)})")
        return load_annotations(ann[name], require_labels=labels)

    out = {"train": load(splits["train"])}
    select = splits["select"]
    if isinstance(select, dict):
        out["train"], out["select"] = holdout_split(out["train"], select["holdout"])
    else:
        if select in splits["report"] and not splits.get("select_on_reported"):
            raise ValueError(f"dataset {data_cfg['name']}: the selection split {select!r} is also reported (set "
                             "splits.select_on_reported: true for the paper's protocol, config/presets)")
        out["select"] = load(select)
    for name in splits["report"]:
        out[f"report:{name}"] = load(name)
    return out


def query_record(q: Query) -> dict:
    """The ground-truth record the evaluator reads."""
    rec = {"qid": q.qid, "query": q.query, "duration": q.duration, "vid": q.vid,
           "relevant_windows": [list(w) for w in q.windows]}
    if q.clip_ids is not None:
        rec["relevant_clip_ids"] = list(q.clip_ids)
        rec["saliency_scores"] = [list(s) for s in q.saliency]
    return rec


def saliency_targets(q: Query, n_clips: int, clip_len: float, kind: str) -> np.ndarray:
    centres = (np.arange(n_clips) + 0.5) * clip_len
    if kind == "qvh":
        scores = np.zeros(n_clips, np.float32)
        if q.clip_ids:
            by_clip = {c: float(np.mean(s)) for c, s in zip(q.clip_ids, q.saliency)}
            for i, t in enumerate(centres):
                scores[i] = by_clip.get(int(t // QVH_CLIP), 0.0)
        return scores
    inside = np.zeros(n_clips, bool)
    for s, e in q.windows:
        inside |= (centres >= s) & (centres < e)
    if q.windows and not inside.any():  # a window shorter than a clip still marks its clip
        for s, e in q.windows:
            inside[min(int(((s + e) / 2) // clip_len), n_clips - 1)] = True
    return inside.astype(np.float32)


def span_targets(q: Query, n_clips: int, clip_len: float) -> np.ndarray:
    length = n_clips * clip_len
    out = []
    for s, e in q.windows:
        s, e = min(max(s / length, 0.0), 1.0), min(max(e / length, 0.0), 1.0)
        if e > s:
            out.append(((s + e) / 2, e - s))
    return np.asarray(out, np.float32).reshape(-1, 2)


@dataclass
class CacheInfo:
    store: str
    failed: frozenset  # vids that failed extraction
    video_dim: int
    text_dim: int
    layers: int
    identity: dict | None = None  # the extraction configuration (extract.identity), carried into checkpoints
    digest: str | None = None  # the features digest of the summary (extract.stores.write_summary)
    text_layers: int | None = None  # cached text layers (None: as many as video layers)
    failed_queries: frozenset = frozenset()  # query files that could not be imported (extract.importer)


def cache_info(summary_path: str) -> CacheInfo:
    """Read the extraction summary (results of stage 1) and the store's feature dimensions."""
    import json

    from extract.cache import FeatureStore

    with open(summary_path) as fh:
        summary = json.load(fh)
    store = FeatureStore(summary["store"])
    failed = frozenset(f["vid"] for f in summary.get("failed_videos", []))
    videos, queries = store.keys("videos"), store.keys("queries")
    if not videos or not queries:
        raise ValueError(f"{summary['store']}: the feature cache holds no video or no query features")
    layers, _, vdim = store.entry("videos", videos[0]).shape
    tlayers, _, tdim = store.entry("queries", queries[0]).shape
    return CacheInfo(summary["store"], failed, int(vdim), int(tdim), int(layers), summary.get("identity"),
                     summary.get("features_digest"), int(tlayers),
                     frozenset(str(f["qid"]) for f in summary.get("failed_queries", [])))


class FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, queries: list[Query], store: str, clip_len: float, saliency: str, min_clips: int = 0,
                 preload: bool = False, failed: frozenset = frozenset(), failed_queries: frozenset = frozenset()):
        from extract.cache import ABSENT, ITEM, CacheError

        self.store_path, self.clip_len, self.kind = store, clip_len, saliency
        self._store, self._pid = None, None
        probe = self.store()
        self.items, self.skipped = [], {"failed_video": 0, "short_video": 0, "missing": 0}
        if failed_queries:
            self.skipped["failed_query"] = 0
        self._n_clips: dict[str, int] = {}
        for q in queries:
            if q.vid in failed:
                self.skipped["failed_video"] += 1
                continue
            if q.key in failed_queries:  # its stored copy (if any) is not what its file holds now
                self.skipped["failed_query"] += 1
                continue
            if q.vid not in self._n_clips:
                self._n_clips[q.vid] = int(probe.video_attrs(q.vid).get("n_clips", -1))
            n = self._n_clips[q.vid]
            for group, key in (("videos", q.vid), ("queries", q.key)):
                problem = probe.problem(group, key)
                if problem not in (None, ABSENT):  # damaged data is an error, never skipped
                    raise CacheError(f"{self.store_path}: {ITEM[group]} '{key}': {problem}; "
                                     f"`python -m extract verify --store {self.store_path}` marks every damaged item "
                                     "and the next `snakemake <target>` re-extracts them")
            if n < 0 or not probe.query_complete(q.key):
                self.skipped["missing"] += 1
            elif n < min_clips:
                self.skipped["short_video"] += 1
            else:
                self.items.append(q)
        self._videos: dict[str, np.ndarray] = {}
        self._texts: dict[str, np.ndarray] = {}
        if preload:  # in file order, each item verified
            self._videos = probe.read_many("videos", (q.vid for q in self.items))
            self._texts = probe.read_many("queries", (q.key for q in self.items))

    def store(self):
        """The store, opened once per process (DataLoader workers fork or spawn)."""
        if self._store is None or self._pid != os.getpid():
            from extract.cache import FeatureStore

            self._store, self._pid = FeatureStore(self.store_path), os.getpid()
        return self._store

    def __len__(self) -> int:
        return len(self.items)

    def videos(self) -> list[str]:
        """Distinct video ids, in first-use order."""
        return list(dict.fromkeys(q.vid for q in self.items))

    def video_array(self, vid: str) -> np.ndarray:
        video = self._videos.get(vid)
        return self.store().read_video(vid) if video is None else video

    def query_array(self, key: str) -> np.ndarray:
        text = self._texts.get(key)
        return self.store().read_query(key) if text is None else text

    def __getitem__(self, i: int) -> dict:
        q = self.items[i]
        video, text = self.video_array(q.vid), self.query_array(q.key)
        n = video.shape[1]
        return {"video": video, "text": text, "spans": span_targets(q, n, self.clip_len),
                "saliency": saliency_targets(q, n, self.clip_len, self.kind),
                "meta": {"qid": q.qid, "query": q.query, "vid": q.vid, "n_clips": n, "duration": q.duration}}


def collate(items: list[dict]) -> dict:
    """Pad to the longest video / query of the batch; masks are True on real clips / tokens.

    Features stay float16 (the cache's dtype) here, halving the bytes copied per batch; :func:`batch_to`
    converts them to float32 in one vectorised step on the target device.
    """
    b = len(items)
    k, _, dv = items[0]["video"].shape
    kt, _, dt = items[0]["text"].shape
    t = max(it["video"].shape[1] for it in items)
    n_tok = max(it["text"].shape[1] for it in items)
    video = np.zeros((b, k, t, dv), np.float16)
    text = np.zeros((b, kt, n_tok, dt), np.float16)
    vmask = np.zeros((b, t), bool)
    tmask = np.zeros((b, n_tok), bool)
    sal = np.zeros((b, t), np.float32)
    for i, it in enumerate(items):
        n, m = it["video"].shape[1], it["text"].shape[1]
        video[i, :, :n] = it["video"]
        text[i, :, :m] = it["text"]
        vmask[i, :n] = True
        tmask[i, :m] = True
        sal[i, :n] = it["saliency"]
    return {"video": torch.from_numpy(video), "video_mask": torch.from_numpy(vmask), "text": torch.from_numpy(text),
            "text_mask": torch.from_numpy(tmask), "saliency": torch.from_numpy(sal),
            "spans": [torch.from_numpy(it["spans"]) for it in items], "meta": [it["meta"] for it in items]}


def batch_to(batch: dict, device) -> dict:
    """Move a batch to ``device``; float16 features become float32 there (one conversion per batch)."""
    def move(v):
        v = v.to(device, non_blocking=True)
        return v.float() if v.dtype == torch.float16 else v

    return {k: (move(v) if torch.is_tensor(v) else [x.to(device) for x in v] if k == "spans" else v)
            for k, v in batch.items()}
