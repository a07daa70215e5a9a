"""Extraction jobs: fill one shard of a store (extract.stores creates it and merges the shard reports).

A shard owns the videos whose id hashes to it (:func:`extract.identity.shard_of`) and their queries. It
loads the backbone once, skips every array already complete (so a killed job resumes where it stopped),
decodes in worker processes while the model runs in this one, batches clips across videos, and writes
one report (the Snakemake output of the job) only when it has finished: a job that dies leaves none.
A video that cannot be decoded is recorded with its file and reason; the others are extracted.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract.cache import FeatureOverflowError, FeatureStore, canonical_json
from extract.identity import shard_of
from extract.locking import exclusive
from extract.sources import file_identity, query_change, todo_items, video_change
from extract.decode import DecodeSpec
from extract.decode_pool import DecodePool
from extract.devices import resolve_device
from extract.features import encode_clips, encode_queries

DEFAULT_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two writers never share a temp file
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def find_video(videos_dir: str | Path, vid: str, exts=DEFAULT_EXTS) -> Path | None:
    for ext in exts:
        candidate = Path(videos_dir) / f"{vid}{ext}"
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------------------------------
# shard
# ---------------------------------------------------------------------------------------------------
def add_shard_args(p) -> None:
    p.add_argument("--store-json", required=True, help="store.json written by init-store")
    p.add_argument("--annotations", nargs="+", required=True, help="annotation files (JSON lines)")
    p.add_argument("--videos", required=True, help="folder holding <vid>.<ext> files")
    p.add_argument("--checkpoint", default=None, help="InternVideo2 checkpoint (None: seeded random init, tiny only)")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--n-shards", type=int, required=True)
    p.add_argument("--out", required=True, help="shard report (JSON), written last")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--batch-clips", type=int, default=32, help="clips per forward pass")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds without progress before a video is given up")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    p.add_argument("--exts", default=",".join(DEFAULT_EXTS), help="video file extensions tried, in order")
    p.add_argument("--flush-items", type=int, default=1000,
                   help="write a pack of the store every this many finished items (a killed job loses at most "
                        "the work since its last pack)")
    p.add_argument("--flush-seconds", type=float, default=600.0, help="... or after this many seconds")


def shard_main(args) -> int:
    report = run_shard(
        store_json=args.store_json, annotations=args.annotations, videos=args.videos, checkpoint=args.checkpoint,
        shard=args.shard, n_shards=args.n_shards, workers=args.workers, batch_clips=args.batch_clips,
        timeout_s=args.timeout, device=args.device, threads=args.threads, flush_items=args.flush_items,
        flush_seconds=args.flush_seconds, exts=tuple(e if e.startswith(".") else "." + e for e in args.exts.split(",") if e))
    write_json_atomic(args.out, report)
    failed = report["videos"]["failed"]
    print(f"shard {args.shard}/{args.n_shards}: {report['videos']['extracted']} videos extracted, "
          f"{report['videos']['already_complete']} already complete, {len(failed)} failed, "
          f"{len(report['damaged'])} damaged and {len(report['changed'])} changed re-extracted; "
          f"{report['queries']['extracted']} queries extracted; {rate(report['clips_per_s'])} clips/s")
    for f in failed:
        print(f"  FAILED {f['vid']} ({f['file']}): {f['reason']}")
    for d in report["damaged"]:
        print(f"  DAMAGED {d['item']} re-extracted: {d['reason']}")
    for d in report["changed"]:
        print(f"  CHANGED {d['item']} re-extracted: {d['reason']}")
    return 0


def rate(x: float) -> str:
    """A throughput with at least 2 significant digits and no exponent: 0.071, 1.5, 30, 1234 (the 1b backbone on
    a CPU runs well under 0.1 clips/s, which one decimal printed as 0.0)."""
    if not x > 0:
        return "0"
    return f"{x:.{max(0, 1 - math.floor(math.log10(x)))}f}"


def shard_items(annotations, shard: int, n_shards: int):
    """(sorted video ids, {query key: (text, video id)}) of the annotations' items hashed to ``shard``."""
    from extract.annotations import load_annotations

    vids, queries = set(), {}
    for path in annotations:
        for q in load_annotations(path):
            if shard_of(q.vid, n_shards) == shard:
                vids.add(q.vid)
                queries.setdefault(q.key, (q.query, q.vid))
    return sorted(vids), queries


class _Batcher:
    """Collects decoded chunks from several videos into forward passes of ``size`` clips."""

    def __init__(self, size: int):
        self.size = size
        self.items: list[tuple[str, int, np.ndarray]] = []  # (vid, first clip, uint8 (n, F, 3, S, S))
        self.n = 0

    def add(self, vid: str, first: int, frames: np.ndarray) -> None:
        self.items.append((vid, first, frames))
        self.n += len(frames)

    def drop(self, vid: str) -> None:
        self.items = [it for it in self.items if it[0] != vid]
        self.n = sum(len(it[2]) for it in self.items)

    def pending(self, vid: str) -> bool:
        return any(it[0] == vid for it in self.items)

    def take(self) -> list[tuple[str, int, np.ndarray]]:
        out, room = [], self.size
        while self.items and room > 0:
            vid, first, frames = self.items[0]
            if len(frames) <= room:
                out.append(self.items.pop(0))
                room -= len(frames)
            else:
                out.append((vid, first, frames[:room]))
                self.items[0] = (vid, first + room, frames[room:])
                room = 0
        self.n -= self.size - room
        return out


def run_shard(store_json, annotations, videos, checkpoint, shard, n_shards, workers=2, batch_clips=32,
              timeout_s=600.0, device="auto", threads=0, exts=DEFAULT_EXTS, progress=True, flush_items=1000,
              flush_seconds=600.0, items=None) -> dict:
    """Extract this shard's videos and queries: those of ``annotations`` hashed to it, or ``items`` =
    (video ids, {query key: (text, video id)}) given directly (``python -m extract videos``). One job per shard
    of a store at a time (:mod:`extract.locking`)."""
    import torch

    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    meta = json.loads(Path(store_json).read_text())
    path = Path(meta["store"])
    lock = path.with_name(f"{path.name}.locks") / f"{shard}-of-{n_shards}.lock"
    with exclusive(lock, f"shard {shard}/{n_shards} of {path}"):
        store = FeatureStore(path, mode="a", flush_items=flush_items, flush_seconds=flush_seconds)
        if store.identity_hash != meta["identity_hash"]:
            raise RuntimeError(f"{path}: store identity {store.identity_hash} != {meta['identity_hash']}")
        if items is None:
            items = shard_items(annotations, shard, n_shards)
        # the files as this job finds them (a file replaced while the job runs differs at the next check)
        sources = _source_stats(videos, items[0], exts)
        try:
            job = ShardJob(meta=meta, videos=videos, checkpoint=checkpoint, shard=shard, n_shards=n_shards,
                           workers=workers, batch_clips=batch_clips, timeout_s=timeout_s, device=device,
                           exts=tuple(exts), progress=progress)
            report = _run_shard(store, job, items, t_start)
        finally:
            store.close()  # writes the finished items still buffered, also when a video or the model failed
    vids, queries = items
    report["sources"] = sources
    report["digest"] = shard_digest(store, vids, queries, report["videos"]["failed"])
    return report


def shard_digest(store, vids, queries, failed) -> str:
    """Fingerprint of what the shard's items hold now: their stored content and the videos that failed. The
    workflow re-trains only when a dataset's digests change (workflow/rules/common.smk)."""
    return canonical_json([store.digest("videos", vids), store.digest("queries", queries),
                           sorted(f["vid"] for f in failed)])


def _source_stats(videos, vids, exts) -> dict[str, list[int]]:
    """{vid: [size, mtime_ns]} of the shard's video files: what the workflow compares before the next run to find
    replaced files (extract.repair)."""
    out = {}
    for vid in vids:
        path = find_video(videos, vid, exts)
        if path is not None:
            st = path.stat()
            out[vid] = [st.st_size, st.st_mtime_ns]
    return out


@dataclass(frozen=True)
class ShardJob:
    """What one shard job extracts and how: :func:`run_shard`'s settings once its store is open."""

    meta: dict  # store.json: the store's path, identity and identity hash
    videos: str | Path  # folder holding <vid>.<ext> files
    checkpoint: str | None
    shard: int
    n_shards: int
    workers: int
    batch_clips: int
    timeout_s: float
    device: str
    exts: tuple[str, ...]
    progress: bool


def _run_shard(store, job: ShardJob, items, t_start: float) -> dict:
    """Extract what of ``items`` = (video ids, {query key: (text, video id)}) the store lacks (or holds damaged or
    from a changed source); returns the shard report."""
    ident = job.meta["identity"]
    vids, queries = items
    report, todo_vids, todo_queries = _new_report(store, job, vids, queries)
    if not todo_vids and not todo_queries:
        report["seconds"] = time.perf_counter() - t_start
        return report

    from extract.backbone import load_backbone

    dev = resolve_device(job.device)
    report["device"] = dev
    vision, text = load_backbone(ident["backbone"], job.checkpoint, seed=ident.get("seed", 0) or 0,
                                 gelu=ident.get("gelu"), num_frames=ident["frames_per_clip"])
    vision.eval().to(dev)
    text.eval().to(dev)

    if todo_queries:
        _extract_queries(store, text, [(k, queries[k]) for k in todo_queries], ident, dev)
        report["queries"]["extracted"] = len(todo_queries)

    run = _VideoExtraction(store, vision, ident, dev, job, report)
    run.extract(todo_vids, t_start)

    elapsed = time.perf_counter() - t_start
    report.update(clips=run.clips, seconds=elapsed, model_seconds=run.model_s,
                  clips_per_s=run.clips / elapsed if elapsed > 0 else 0.0,
                  model_busy_fraction=run.model_s / elapsed if elapsed > 0 else 0.0)
    return report


def _new_report(store, job: ShardJob, vids, queries) -> tuple[dict, list, list]:
    """(the shard report before any extraction, videos to extract, queries to extract): the items absent from the
    store, damaged in it or whose source changed since they were extracted."""
    damaged: list[dict] = []
    changed: list[dict] = []  # items whose source (video file, query text) changed since they were extracted
    todo_vids = todo_items(store, "videos", vids, damaged, changed, video_change(job.videos, job.exts, find_video))
    todo_queries = todo_items(store, "queries", queries, damaged, changed, query_change(queries))
    meta = job.meta
    report = {
        "shard": job.shard, "n_shards": job.n_shards, "store": meta["store"], "identity_hash": meta["identity_hash"],
        "videos": {"total": len(vids), "already_complete": len(vids) - len(todo_vids), "extracted": 0,
                   "failed": [], "clamped": []},
        "queries": {"total": len(queries), "already_complete": len(queries) - len(todo_queries), "extracted": 0},
        "clips": 0, "seconds": 0.0, "model_seconds": 0.0, "clips_per_s": 0.0, "device": None,
        "damaged": damaged,  # items that failed verification, re-extracted now
        "changed": changed,
    }
    return report, todo_vids, todo_queries


class _VideoExtraction:
    """The videos of one shard job: decoded in worker processes (:class:`extract.decode_pool.DecodePool`), their
    clips batched across videos into forward passes of ``batch_clips`` clips, each video written to the store
    once all its clips are encoded. Counts ``clips`` and ``model_s`` (seconds in the model) and records written
    and failed videos in ``report``."""

    def __init__(self, store, vision, ident: dict, dev, job: ShardJob, report: dict):
        self.store, self.vision, self.ident, self.dev, self.job, self.report = store, vision, ident, dev, job, report
        self.n_layers, self.dim = len(ident["vision_layers"]), vision.pooled_dim(ident["pooling"])
        self.batcher = _Batcher(job.batch_clips)
        self.state: dict[str, dict] = {}  # vid -> file, source, info, clip count, features so far
        self.model_s = 0.0
        self.clips = 0
        self.bar = None

    def extract(self, todo_vids, t_start: float) -> None:
        from tqdm import tqdm

        job, ident = self.job, self.ident
        spec = DecodeSpec(clip_len=ident["clip_len"], frames_per_clip=ident["frames_per_clip"],
                          size=ident["image_size"], resize=ident["resize"], chunk_clips=job.batch_clips,
                          clip_rule=ident.get("clip_rule", "round"))
        items = self._files(todo_vids)
        self.bar = tqdm(total=len(todo_vids), desc=f"shard {job.shard}/{job.n_shards}", unit="video",
                        disable=not job.progress, mininterval=1.0 if sys.stderr.isatty() else 10.0)
        self.bar.update(len(todo_vids) - len(items))  # missing files count as processed
        try:
            for vid, kind, payload in DecodePool(items, spec, workers=job.workers, timeout_s=job.timeout_s):
                self._on_event(vid, kind, payload)
                self.bar.set_postfix(clips_per_s=rate(self.clips / max(time.perf_counter() - t_start, 1e-9)),
                                     refresh=False)
            while self.batcher.n:
                self._encode(self.batcher.take())
        finally:
            self.bar.close()

    def _files(self, todo_vids) -> list[tuple[str, str]]:
        """[(vid, file)] of the videos whose file is there; the others are recorded as failed."""
        job, items = self.job, []
        for vid in todo_vids:
            path = find_video(job.videos, vid, job.exts)
            if path is None:
                self.report["videos"]["failed"].append(
                    {"vid": vid, "file": str(Path(job.videos) / f"{vid}{job.exts[0]}"),
                     "reason": f"video file not found (tried {', '.join(job.exts)})"})
            else:
                items.append((vid, str(path)))
                self.state[vid] = {"file": str(path), "source": file_identity(path)}
        return items

    def _on_event(self, vid: str, kind: str, payload) -> None:
        """One message of the decoder pool: a video's start, a chunk of its clips, its end, or its error."""
        st = self.state[vid]
        if kind == "start":
            st.update(info=payload, n_clips=payload["n_clips"], filled=0,
                      feats=np.zeros((self.n_layers, payload["n_clips"], self.dim), np.float32))
        elif kind == "chunk":
            self.batcher.add(vid, *payload)
            while self.batcher.n >= self.job.batch_clips:
                self._encode(self.batcher.take())
        elif kind == "done":
            st["info"].update(payload)
            st["done"] = True
            self._write_if_complete(vid)
        else:  # error
            self.batcher.drop(vid)
            st.pop("feats", None)
            self.report["videos"]["failed"].append({"vid": vid, "file": st["file"], "reason": payload})
            self.bar.update(1)

    def _encode(self, pieces) -> None:
        """One forward pass over ``pieces`` [(vid, first clip, frames)], its features put in their videos' place."""
        batch_clips = self.job.batch_clips
        frames = np.concatenate([p[2] for p in pieces])
        # every pass has batch_clips clips (the last one padded with copies): a clip's features then do not
        # depend on which clips share its batch, so a resumed job writes the bits an uninterrupted one would
        padded = np.concatenate([frames, np.repeat(frames[:1], batch_clips - len(frames), axis=0)])
        t0 = time.perf_counter()
        feats = encode_clips(self.vision, padded, self.ident, self.dev)[:, :len(frames)]  # (K, B, D); .cpu() waits
        self.model_s += time.perf_counter() - t0
        self.clips += len(frames)
        offset = 0
        for vid, first, fr in pieces:
            st = self.state[vid]
            st["feats"][:, first:first + len(fr)] = feats[:, offset:offset + len(fr)]
            st["filled"] += len(fr)
            offset += len(fr)
            self._write_if_complete(vid)

    def _write_if_complete(self, vid: str) -> None:
        """Write a video to the store once it is decoded to the end and all its clips are encoded."""
        st = self.state[vid]
        if st.get("done") and st["filled"] == st["n_clips"] and not self.batcher.pending(vid):
            info = st["info"]
            try:
                self.store.write_video(vid, st["feats"], clip_len=self.ident["clip_len"], duration=info["duration"],
                                       fps=info["fps"], codec=info["codec"], clamped=info.get("clamped", False),
                                       file=os.path.basename(st["file"]), source=st["source"])
                self.report["videos"]["extracted"] += 1
                if info.get("clamped"):
                    self.report["videos"]["clamped"].append(vid)
            except FeatureOverflowError as err:
                self.report["videos"]["failed"].append({"vid": vid, "file": st["file"], "reason": str(err)})
            st.pop("feats", None)
            self.bar.update(1)


def _extract_queries(store, text, items, ident, dev, batch: int = 256) -> None:
    from extract.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(text.name, max_len=ident["text_max_len"])
    for i in range(0, len(items), batch):  # encode_queries fixes the shape of every pass itself
        chunk = items[i:i + batch]
        feats = encode_queries(text, tokenizer, [q for _, (q, _) in chunk], ident, dev)
        for (key, (q, vid)), f in zip(chunk, feats):
            store.write_query(key, f, vid=vid, query=q)
