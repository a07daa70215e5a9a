"""The two small jobs around the shard jobs: create a dataset's store (init-store) and merge the shard reports into
the extraction summary (summary), with the features digest training depends on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from extract.cache import FeatureStore, canonical_json
from extract.shard import write_json_atomic


# ---------------------------------------------------------------------------------------------------
# init-store
# ---------------------------------------------------------------------------------------------------
def add_init_args(p) -> None:
    p.add_argument("--store", required=True, help="path of the Zarr store to create")
    p.add_argument("--identity", required=True, help="extraction identity as JSON (see extract.identity)")
    p.add_argument("--out", required=True, help="store.json written on success")


def init_main(args) -> int:
    identity = json.loads(args.identity)
    store = FeatureStore.create(args.store, identity)
    store.close()
    write_json_atomic(args.out, {"store": str(Path(args.store)), "identity": identity,
                                 "identity_hash": store.identity_hash})
    print(f"store ready: {args.store} (identity {store.identity_hash})")
    return 0


# ---------------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------------
def add_summary_args(p) -> None:
    p.add_argument("--store-json", required=True)
    p.add_argument("--shards", nargs="+", required=True, help="shard reports")
    p.add_argument("--out", required=True)


def summary_main(args) -> int:
    meta = json.loads(Path(args.store_json).read_text())
    reports = [json.loads(Path(p).read_text()) for p in args.shards]
    write_summary(meta, reports, args.out)
    return 0


def write_summary(meta: dict, reports: list[dict], out: str | Path) -> dict:
    """Merge shard reports into the extraction summary (counts, failed videos with file and reason), write it
    to ``out`` and print it."""
    failed = sorted((f for r in reports for f in r["videos"]["failed"]), key=lambda f: f["vid"])
    summary = {
        "store": meta["store"], "identity": meta["identity"], "identity_hash": meta["identity_hash"],
        "videos": {k: sum(r["videos"][k] for r in reports) for k in ("total", "already_complete", "extracted")},
        "queries": {k: sum(r["queries"][k] for r in reports) for k in ("total", "already_complete", "extracted")},
        "failed_videos": failed,
        # query files that could not be imported (extract.importer); training leaves their queries out
        "failed_queries": sorted((f for r in reports for f in r["queries"].get("failed", [])),
                                 key=lambda f: str(f["qid"])),
        "clamped_videos": sorted(v for r in reports for v in r["videos"].get("clamped", [])),
        "damaged_reextracted": [d for r in reports for d in r.get("damaged", [])],
        "changed_reextracted": [d for r in reports for d in r.get("changed", [])],
        # what training depends on: the content of every item and the failures, shard by shard (None for
        # reports of jobs older than the digest)
        "features_digest": hashlib.sha1(canonical_json(sorted(
            [r["shard"], r["n_shards"], r.get("digest")] for r in reports)).encode()).hexdigest()[:16],
        "clips": sum(r["clips"] for r in reports),
        "seconds": sum(r["seconds"] for r in reports),
    }
    summary["videos"]["failed"] = len(failed)
    write_json_atomic(out, summary)
    v = summary["videos"]
    print(f"{meta['store']}: {v['total']} videos ({v['extracted']} extracted now, {v['already_complete']} "
          f"already complete, {v['failed']} failed), {summary['queries']['total']} queries")
    for f in failed:
        print(f"  FAILED {f['vid']} ({f['file']}): {f['reason']}")
    for f in summary["failed_queries"]:
        print(f"  FAILED query {f['qid']} ({f['file']}): {f['reason']}")
    return summary
