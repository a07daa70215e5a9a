"""The feature store at QVHighlights' real shapes: inodes, creation, open and preload times.

    python bench/cache.py                       # the whole of QVHighlights (train + val + test), ~5.9 GB
    python bench/cache.py --fraction 0.1 --keep /tmp/qvh.zarr

Shapes come from the real annotation files (../shared/data/qvhighlights): one video per vid with
round(duration / 2 s) clips (Tab. A: clip length 2 s) of K = 4 layers x 768 (InternVideo2-1B's attention
pooling, extract/internvideo2.py), one query per qid with (words + 1) tokens ([CLS] + word pieces, approximated
by words) of K = 4 x 1024 (BERT-large). Values are random float16. Items go through the store's public API,
written by ``--shards`` writers in turn as the extraction jobs would (shard of a vid: extract.identity.shard_of).

- inodes: files and directories of the store;
- create_s: writing every item (each writer closed at the end);
- open_s: what training does before its first batch: open the store and check every item of every query
  (sdst.data.FeatureDataset without preload);
- preload_s: the same with preload=True (every video and query read, and verified where the store verifies).

The page cache is dropped before open and preload when the process may (root, /proc/sys/vm/drop_caches);
``cold_cache`` says whether it was. Run the same script against an older checkout to compare layouts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QVH = ROOT.parent / "shared" / "data" / "qvhighlights"
SPLITS = ("highlight_train_release.jsonl", "highlight_val_release.jsonl", "highlight_test_release.jsonl")


def qvh_items(fraction: float) -> tuple[dict, list]:
    videos, rows = {}, []
    for name in SPLITS:
        with open(QVH / name) as fh:
            for line in fh:
                if line.strip():
                    r = json.loads(line)
                    videos.setdefault(r["vid"], max(1, round(r["duration"] / 2.0)))
                    rows.append(r)
    keep = sorted(videos)[: max(1, int(len(videos) * fraction))]
    videos = {v: videos[v] for v in keep}
    return videos, [r for r in rows if r["vid"] in videos]


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def count_inodes(path: Path) -> int:
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(path)) + 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=1.0, help="share of QVHighlights' videos (their queries follow)")
    p.add_argument("--shards", type=int, default=4, help="writers, as extract.run.shards (default 4)")
    p.add_argument("--keep", default=None, help="write the store here and keep it (default: a temporary folder)")
    args = p.parse_args(argv)

    from extract.cache import FeatureStore
    from extract.identity import shard_of
    from extract.annotations import load_annotations
    from sdst.data import FeatureDataset

    videos, rows = qvh_items(args.fraction)
    rng = np.random.default_rng(0)
    pool = rng.normal(size=4 * 200 * 1024).astype(np.float16)  # sliced per item: values do not matter here
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_cache_"))
    path = tmp / "features.zarr" if not args.keep else tmp
    shutil.rmtree(path, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        for shard in range(args.shards):
            store = FeatureStore.create(path, {"bench": "qvh"})
            for vid, n in videos.items():
                if shard_of(vid, args.shards) == shard:
                    store.write_video(vid, pool[: 4 * n * 768].reshape(4, n, 768), duration=2.0 * n)
            for r in rows:
                if shard_of(r["vid"], args.shards) == shard:
                    n_tok = len(r["query"].split()) + 1
                    store.write_query(str(r["qid"]), pool[: 4 * n_tok * 1024].reshape(4, n_tok, 1024), vid=r["vid"])
            getattr(store, "close", lambda: None)()  # the one-array-per-item layout had nothing to close
        create_s = time.perf_counter() - t0
        ann = tmp / "ann.jsonl"
        ann.write_text("\n".join(json.dumps({**r, "relevant_windows": r.get("relevant_windows", [[0, 2]])})
                                 for r in rows))
        queries = load_annotations(str(ann))
        cold = drop_caches()
        t0 = time.perf_counter()
        ds = FeatureDataset(queries, str(path), 2.0, "window")
        open_s = time.perf_counter() - t0
        assert len(ds) == len(queries), ds.skipped
        del ds
        drop_caches()
        t0 = time.perf_counter()
        ds = FeatureDataset(queries, str(path), 2.0, "window", preload=True)
        preload_s = time.perf_counter() - t0
        size = sum(a.nbytes for a in ds._videos.values()) + sum(a.nbytes for a in ds._texts.values())
        print(json.dumps({
            "what": "feature store, QVHighlights shapes", "videos": len(videos), "queries": len(rows),
            "shards": args.shards, "gb": round(size / 1e9, 2), "inodes": count_inodes(path),
            "create_s": round(create_s, 1), "open_s": round(open_s, 2), "preload_s": round(preload_s, 1),
            "cold_cache": cold}, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
