"""Extract InternVideo2 features for any folder of videos (and optionally a list of queries), no annotations.

    python -m extract videos --videos DIR --out OUT [--queries FILE] [--backbone 1b --checkpoint PATH]

Every ``<id>.<ext>`` in DIR (the id is the file name without extension) is one video. ``--queries`` is a text
file with one query per line (its qid is the line number) or JSON lines with ``query`` and optionally ``qid``
and ``vid`` (an annotation file of the pipeline works as is). OUT gets the pipeline's layout and guarantees,
because the work is done by the pipeline's own shard job (:func:`extract.shard.run_shard`): ``OUT/features.zarr``
(the packed store, resumable: a re-run extracts only what is absent or damaged), ``OUT/store.json``,
``OUT/shards/<i>-of-<n>.json`` (the job's report, written last) and ``OUT/summary.json`` (counts, and every
video that failed with its file and reason). Read it back with :mod:`extract.reader`; convert it for other
codebases with ``python -m extract export``. ``--shard i --n-shards n`` splits a folder over several jobs
(one per GPU); the summary then merges the reports present.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from extract.annotations import text_lines
from extract.shard import DEFAULT_EXTS, write_json_atomic
from extract.cli import exits_on_bad_input

# The feature settings of config.yaml's `extract` section (tests/test_videos.py checks they agree), so that a
# folder extracted here and a dataset extracted by the pipeline with the same backbone have the same features.
DEFAULTS = {"frames_per_clip": 4, "image_size": 224, "resize": "official", "vision_layers": [-4, -3, -2, -1],
            "pooling": "attn", "text_layers": [-4, -3, -2, -1], "text_max_len": 40, "gelu": "tanh", "seed": 0}


class QueryFileError(ValueError):
    """Malformed queries file; the message names the file and the line."""


def list_videos(folder: str | Path, exts=DEFAULT_EXTS) -> dict[str, Path]:
    """{id: file} for the video files directly in ``folder``; two files with one id are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of videos")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in exts and path.is_symlink() and not path.is_file():
            try:
                path.stat()
                what = "does not lead to a file"
            except OSError as err:  # ENOENT: dangling; ELOOP: a loop of links
                what = "is a loop of symbolic links" if err.errno == errno.ELOOP else \
                    f"is a dangling symbolic link (to {os.readlink(path)})"
            raise ValueError(f"{path} {what}; fix or remove it, then run again")
        if path.is_file() and path.suffix.lower() in exts:
            if path.stem in found:
                raise ValueError(f"{folder}: two videos with id '{path.stem}': {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    if not found:
        raise FileNotFoundError(f"{folder}: no video files ({', '.join(exts)})")
    return found


def read_queries(path: str | Path) -> dict[str, tuple[str, str]]:
    """{qid: (query text, video id or "")} from a text file (one per line) or JSON lines."""
    path = Path(path)
    if path.is_dir():
        raise QueryFileError(f"{path}: --queries takes a file (one query per line, or JSON lines), not a folder")
    out: dict[str, tuple[str, str]] = {}
    jsonl = path.suffix in (".jsonl", ".json")
    for lineno, line in text_lines(path, QueryFileError):
        where = f"{path}:{lineno}"
        if jsonl:
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise QueryFileError(f"{where}: not valid JSON ({err})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or not obj["query"].strip():
                raise QueryFileError(f"{where}: expected an object with a non-empty string field 'query'")
            qid, text, vid = obj.get("qid", lineno), obj["query"], obj.get("vid", "")
            if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
                raise QueryFileError(f"{where}: field 'qid' must be an int or a non-empty string, got {qid!r}")
            if not isinstance(vid, str):
                raise QueryFileError(f"{where}: field 'vid' must be a string, got {vid!r}")
        else:
            qid, text, vid = lineno, line.strip(), ""
        if str(qid) in out:
            raise QueryFileError(f"{where}: duplicate qid {qid!r}")
        out[str(qid)] = (text.strip(), vid)
    if not out:
        raise QueryFileError(f"{path}: no queries in file")
    return out


def _check_writable(out: Path) -> None:
    """Fail before anything is extracted when ``out`` cannot be written (read-only, not a folder, no permission)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out must be a folder, this is a file")
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{out}: cannot write the output here ({err.strerror or err}); choose another --out") from None


def folder_identity(backbone: str, checkpoint: str | None, clip_len: float, clip_rule: str = "round",
                    **overrides) -> dict:
    """The extraction identity of a folder run: the pipeline's function with the defaults above."""
    from extract.identity import extraction_identity

    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown extraction settings: {sorted(unknown)}")
    return extraction_identity({"backbone": backbone, "checkpoint": checkpoint, "clip_len": clip_len,
                                "clip_rule": clip_rule}, {**DEFAULTS, **overrides}, where={"vision_layers": "--layers"})


def extract_folder(videos: str | Path, out: str | Path, queries: str | Path | None = None, backbone: str = "1b",
                   checkpoint: str | None = None, clip_len: float = 2.0, shard: int = 0, n_shards: int = 1,
                   exts=DEFAULT_EXTS, progress: bool = True, clip_rule: str = "round", **run) -> dict:
    """Extract a folder into ``out`` (see the module docstring); returns the summary. ``run``: workers,
    batch_clips, timeout_s, device, threads, flush_items, flush_seconds of :func:`extract.shard.run_shard`;
    settings of the features (``DEFAULTS`` keys) may be given too."""
    from extract.cache import FeatureStore
    from extract.identity import shard_of
    from extract.shard import run_shard
    from extract.stores import write_summary

    if backbone == "1b" and not checkpoint:
        raise ValueError("--backbone 1b needs --checkpoint (InternVideo2-stage2_1b-224p-f4.pt); only the tiny "
                         "test backbone runs without one")
    feature_settings = {k: run.pop(k) for k in list(run) if k in DEFAULTS}
    identity = folder_identity(backbone, checkpoint, clip_len, clip_rule, **feature_settings)  # checks layers too
    out = Path(out)
    files = list_videos(videos, exts)
    query_items = read_queries(queries) if queries is not None else {}
    _check_writable(out)
    vids = sorted(v for v in files if shard_of(v, n_shards) == shard)
    query_items = {k: v for k, v in query_items.items() if shard_of(v[1] or k, n_shards) == shard}
    store = FeatureStore.create(out / "features.zarr", identity)
    store.close()
    store_json = out / "store.json"
    meta = {"store": str(out / "features.zarr"), "identity": identity, "identity_hash": store.identity_hash}
    write_json_atomic(store_json, meta)
    report = run_shard(store_json, None, videos, checkpoint, shard, n_shards, exts=exts, progress=progress,
                       items=(vids, query_items), **run)
    write_json_atomic(out / "shards" / f"{shard}-of-{n_shards}.json", report)
    reports = [json.loads(p.read_text()) for p in sorted((out / "shards").glob(f"*-of-{n_shards}.json"))]
    return write_summary(meta, reports, out / "summary.json")


def add_args(p) -> None:
    p.add_argument("--videos", required=True, help="folder of video files; a video's id is its file name stem")
    p.add_argument("--out", required=True, help="output folder (features.zarr, store.json, summary.json)")
    p.add_argument("--queries", default=None,
                   help="queries to encode: .txt (one per line, qid = line number) or .jsonl (query, qid, vid)")
    p.add_argument("--backbone", default="1b", choices=["1b", "tiny"],
                   help="InternVideo2-1B (needs --checkpoint) or the seeded tiny test backbone")
    p.add_argument("--checkpoint", default=None, help="InternVideo2 checkpoint, e.g. InternVideo2-stage2_1b-224p-f4.pt")
    p.add_argument("--clip-len", type=float, default=2.0,
                   help="seconds per clip (2 for QVHighlights and TACoS features, 1 for Charades-STA)")
    p.add_argument("--clip-rule", default="round", choices=["round", "ceil"],
                   help="clips of a d-second video: round(d / clip-len) (default) or ceil(d / clip-len), the rule of "
                        "the SDST authors' released features (README \"Feature extraction\")")
    p.add_argument("--layers", default=None,
                   help="vision layers to keep, comma-separated (default -4,-3,-2,-1: the last four blocks)")
    p.add_argument("--pooling", default=None, choices=["attn", "mean", "cls"],
                   help="per-clip pooling (default attn: the model's own attention pooling)")
    p.add_argument("--settings", default=None,
                   help="feature settings as JSON, over the defaults (keys of config.yaml's extract section)")
    p.add_argument("--shard", type=int, default=0, help="this job's part of the folder (with --n-shards)")
    p.add_argument("--n-shards", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--batch-clips", type=int, default=32, help="clips per forward pass (raise it on a GPU)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds without progress before a video is given up")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--exts", default=",".join(DEFAULT_EXTS), help="video file extensions, comma-separated")
    p.add_argument("--flush-items", type=int, default=1000, help="write a pack of the store every this many items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@exits_on_bad_input
def main(args) -> int:
    try:
        settings = json.loads(args.settings) if args.settings else {}
    except ValueError as err:
        raise ValueError(f"--settings {args.settings!r}: not JSON ({err})") from None
    if args.layers:
        try:
            settings["vision_layers"] = [int(x) for x in args.layers.split(",")]
        except ValueError:
            raise ValueError(f"--layers {args.layers!r}: comma-separated integers, e.g. -4,-3,-2,-1") from None
    if args.pooling:
        settings["pooling"] = args.pooling
    summary = extract_folder(
        args.videos, args.out, queries=args.queries, backbone=args.backbone, checkpoint=args.checkpoint,
        clip_len=args.clip_len, clip_rule=args.clip_rule, shard=args.shard, n_shards=args.n_shards, progress=not args.no_progress,
        exts=tuple(e if e.startswith(".") else "." + e for e in args.exts.split(",") if e), workers=args.workers,
        batch_clips=args.batch_clips, timeout_s=args.timeout, device=args.device, threads=args.threads,
        flush_items=args.flush_items, **settings)
    return 1 if summary["videos"]["failed"] and not summary["videos"]["extracted"] + summary["videos"][
        "already_complete"] else 0
