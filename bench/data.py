"""Data loading: the Zarr feature cache against one .npy file per video and per query (the peers' format).

    python bench/data.py [--videos 400] [--workers 0 2] [--batch 32]
    python bench/data.py --store cache/demo/<hash>/features.zarr     # also measure an existing cache

Builds, in a temporary folder, QVHighlights-shaped features for ``--videos`` videos (4 layers x 75 clips x
768, float16) with one query each (4 layers x 14 tokens x 1024), written both as this project's Zarr store
and as one .npy per video/query. Prints samples/s through sdst.data (store opened once per worker, handles
reused; and preloaded into RAM) and through an equivalent .npy dataset (np.load per item), each batched
by the same collate function, plus the bytes on disk of both. The training consumption to compare with
is bench/train.py's samples/s.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class NpyDataset:
    """The per-file baseline: np.load of one video file and one query file per item."""

    def __init__(self, folder: Path, items: list[tuple[str, str]], spans):
        self.folder, self.items, self.spans = folder, items, spans

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        vid, qid = self.items[i]
        video = np.load(self.folder / "videos" / f"{vid}.npy")
        text = np.load(self.folder / "queries" / f"{qid}.npy")
        n = video.shape[1]
        return {"video": video, "text": text, "spans": self.spans, "saliency": np.zeros(n, np.float32),
                "meta": {"qid": qid, "query": "", "vid": vid, "n_clips": n, "duration": n * 2.0}}


def build(root: Path, n: int, seed: int = 0):
    from extract.cache import FeatureStore

    rng = np.random.default_rng(seed)
    store = FeatureStore.create(root / "f.zarr", {"bench": seed})
    (root / "npy" / "videos").mkdir(parents=True)
    (root / "npy" / "queries").mkdir(parents=True)
    rows = []
    for i in range(n):
        vid, qid = f"v{i:05d}", str(i)
        v = rng.normal(size=(4, 75, 768)).astype(np.float16)
        t = rng.normal(size=(4, 14, 1024)).astype(np.float16)
        store.write_video(vid, v)
        store.write_query(qid, t, vid=vid)
        np.save(root / "npy" / "videos" / f"{vid}.npy", v)
        np.save(root / "npy" / "queries" / f"{qid}.npy", t)
        rows.append({"qid": i, "query": "a query", "duration": 150.0, "vid": vid, "relevant_windows": [[10.0, 30.0]]})
    store.close()
    ann = root / "ann.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    return store, ann


def throughput(dataset, batch: int, workers: int, epochs: int = 2) -> float:
    import torch

    from sdst.data import collate

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         collate_fn=collate, persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up epoch (worker start, page cache)
        pass
    t0, n = time.perf_counter(), 0
    for _ in range(epochs):
        for b in loader:
            n += len(b["meta"])
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--store", default=None, help="an existing feature store to measure as well")
    args = p.parse_args(argv)

    from extract.annotations import load_annotations
    from sdst.data import FeatureDataset

    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        store, ann = build(tmp, args.videos)
        queries = load_annotations(ann)
        spans = np.array([[0.13, 0.13]], np.float32)
        results = {"videos": args.videos, "shape_video": [4, 75, 768], "shape_query": [4, 14, 1024],
                   "bytes_zarr": _du(tmp / "f.zarr"), "bytes_npy": _du(tmp / "npy")}
        for w in args.workers:
            zarr_ds = FeatureDataset(queries, str(tmp / "f.zarr"), 2.0, "window")
            npy_ds = NpyDataset(tmp / "npy", [(q.vid, q.key) for q in queries], spans)
            results[f"zarr_samples_per_s_workers{w}"] = round(throughput(zarr_ds, args.batch, w), 1)
            results[f"npy_samples_per_s_workers{w}"] = round(throughput(npy_ds, args.batch, w), 1)
        pre = FeatureDataset(queries, str(tmp / "f.zarr"), 2.0, "window", preload=True)
        results["zarr_preloaded_samples_per_s"] = round(throughput(pre, args.batch, 0), 1)
        results["cpu_count"] = os.cpu_count()
        print(json.dumps(results))
        if args.store:
            print(json.dumps({"store": args.store, "bytes": _du(Path(args.store))}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
