"""Finished extractions that are no longer true: the shard jobs the workflow must run again, found before it runs.

A shard job's report (``<cache>/shards/<i>-of-<n>.json``) is its Snakemake output, so once written Snakemake
would never run the job again by itself, although a chunk file may since have been deleted or truncated, or a
video file replaced by another of the same name. Each shard job therefore also takes a small input file,
``<cache>/shards/<i>-of-<n>.health``, which :func:`prepare` (an input function of rule extract_shard) rewrites
when it finds that the shard's items no longer match its report:

- an item the report counts as extracted is missing from the store or its chunk is too short (read from the
  pack indexes and file sizes, without reading the data);
- a video file's size or modification time differs from the one the report recorded.

New content makes Snakemake run the job again (it compares an input's checksum, not only its time), and the job
re-extracts exactly the damaged and changed items (:func:`extract.shard.run_shard`). Damage that only reading
finds (altered bytes) is found by ``python -m extract verify``, which marks the shards holding it the same way.
Training depends on the content of the features, not on the job having run (workflow/rules/train.smk), so a
repair that restores the same features re-trains nothing.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from extract.cache import ABSENT, GROUPS, ITEM, CacheError, FeatureStore


def health_file(cache: str | Path, shard: int, n_shards: int) -> Path:
    return Path(cache) / "shards" / f"{shard}-of-{n_shards}.health"


def mark(cache: str | Path, shard: int, n_shards: int, reasons: list[str]) -> Path:
    """Rewrite the shard's health file (new content every time) so that its job runs again."""
    path = health_file(cache, shard, n_shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"marked_ns": time.time_ns(), "reasons": reasons}, indent=1) + "\n")
    return path


@functools.lru_cache(maxsize=8)
def _store(path: str) -> FeatureStore | None:
    try:
        return FeatureStore(path)
    except CacheError:
        return None


def problems(cache: str | Path, shard: int, n_shards: int, items, videos: str | Path, exts) -> list[str]:
    """What makes the shard's finished report untrue (see the module docstring); [] when nothing does, or when
    the shard has not finished (its job runs anyway). ``items()`` gives the shard's (video ids, {query key:
    (text, video id)}); it is called only for a finished shard (before, the annotations may not exist yet)."""
    from extract.shard import find_video

    cache = Path(cache)
    report_path = cache / "shards" / f"{shard}-of-{n_shards}.json"
    if not report_path.is_file() or not (cache / "features.zarr").is_dir():
        return []
    store = _store(str(cache / "features.zarr"))
    if store is None:
        return []
    report = json.loads(report_path.read_text())
    vids, queries = items()
    failed = {f["vid"] for f in report["videos"]["failed"]}
    found = []
    for group, keys in (("videos", [v for v in vids if v not in failed]),
                        ("queries", [k for k, (_, vid) in queries.items() if vid not in failed])):
        for key in keys:
            problem = store.problem(group, key)
            if problem is not None:
                found.append(f"{ITEM[group]} '{key}': {'missing from the store' if problem == ABSENT else problem}")
    recorded = report.get("sources", {})
    for vid in vids:
        path = find_video(videos, vid, exts)
        if vid in recorded and path is not None:
            st = path.stat()
            if [st.st_size, st.st_mtime_ns] != recorded[vid]:
                found.append(f"video '{vid}': {path} has another size or modification time than when it was "
                             "extracted (the job compares its content)")
    return found


def prepare(cache: str | Path, shard: int, n_shards: int, items, videos, exts) -> str:
    """The health file of one shard job (created if absent), rewritten when :func:`problems` finds something;
    prints what it found. Returns its path (the input function's value)."""
    path = health_file(cache, shard, n_shards)
    found = problems(cache, shard, n_shards, items, videos, exts)
    if found:
        mark(cache, shard, n_shards, found)
        print(f"{cache}: shard {shard}/{n_shards} runs again for {len(found)} item(s): "
              + "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else ""), file=sys.stderr)
    elif not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")
    return str(path)


def import_problems(cache: str | Path, items) -> list[str]:
    """What makes a finished import (``<cache>/import.json``, extract.importer) untrue: an item it imported is missing
    or truncated in the store, or a source file was replaced, removed or has appeared (compared by size and mtime
    with what the report recorded). ``items()`` gives ({vid: [files]}, {qid: file}) as the import reads them."""
    cache = Path(cache)
    report_path = cache / "import.json"
    store = _store(str(cache / "features.zarr")) if report_path.is_file() else None
    if store is None:
        return []
    report = json.loads(report_path.read_text())
    videos, queries = items()
    found = []
    for group, files_of, name in (("videos", videos, "vid"), ("queries", {k: [f] for k, f in queries.items()}, "qid")):
        failed = {str(f[name]) for f in report[group]["failed"]}
        recorded = report.get("sources", {}).get(group, {})
        for key, files in files_of.items():
            problem = None if key in failed else store.problem(group, key)
            if problem is not None:
                found.append(f"{ITEM[group]} '{key}': {'missing from the store' if problem == ABSENT else problem}")
            if [[f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()] != recorded.get(key, []):
                found.append(f"{ITEM[group]} '{key}': its file changed, appeared or went since the import")
    return found


def prepare_import(cache: str | Path, items) -> str:
    """The import job's health file ``<cache>/import.health``, rewritten when :func:`import_problems` finds
    something (so Snakemake runs the import again, which re-imports exactly those items)."""
    path = Path(cache) / "import.health"
    found = import_problems(cache, items)
    if found or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"marked_ns": time.time_ns(), "reasons": found}, indent=1) + "\n" if found
                        else "{}\n")
    if found:
        print(f"{cache}: the import runs again for {len(found)} item(s): " + "; ".join(found[:3])
              + (f"; and {len(found) - 3} more" if len(found) > 3 else ""), file=sys.stderr)
    return str(path)


def mark_damaged(store_path: str | Path, damaged: dict[str, dict[str, str]], store: FeatureStore) -> list[str]:
    """After ``verify``: mark every finished shard (``shards/<i>-of-<n>.json`` beside the store) that holds a
    damaged item, so that the next workflow run or ``python -m extract videos`` run re-extracts it. Returns the
    shards marked, as "i/n"."""
    from extract.identity import shard_of

    cache = Path(store_path).parent
    marked = []
    for report in sorted((cache / "shards").glob("*-of-*.json")):
        shard, n_shards = (int(x) for x in report.stem.split("-of-"))
        reasons = []
        for group, items in damaged.items():
            for key, problem in items.items():
                entry = store.entry(group, key)
                vid = key if group == "videos" else (entry.attrs.get("vid") if entry else None) or key
                if shard_of(vid, n_shards) == shard:
                    reasons.append(f"{ITEM[group]} '{key}': {problem}")
        if reasons:
            mark(cache, shard, n_shards, reasons)
            marked.append(f"{shard}/{n_shards}")
    if (cache / "import.json").is_file() and any(damaged.values()):  # an imported store: its one import job
        (cache / "import.health").write_text(json.dumps({"marked_ns": time.time_ns(), "reasons": [
            f"{ITEM[g]} '{k}': {p}" for g, items in damaged.items() for k, p in items.items()]}, indent=1) + "\n")
        marked.append("import")
    return marked


# ---------------------------------------------------------------------------------------------------
# python -m extract verify
# ---------------------------------------------------------------------------------------------------
def add_verify_args(p) -> None:
    p.add_argument("--store", required=True, help="a store: a pipeline cache folder (cache/<dataset>/<hash>), a "
                                                  "`python -m extract videos` output, or features.zarr itself")


def verify_main(args) -> int:
    from extract.reader import store_path

    path = store_path(args.store)
    store = FeatureStore(path)
    bad = store.verify()
    counts = {g: len(store.keys(g)) for g in GROUPS}
    for group in GROUPS:
        for key, problem in sorted(bad[group].items()):
            print(f"DAMAGED {ITEM[group]} '{key}': {problem}")
    n_bad = sum(len(b) for b in bad.values())
    print(f"{args.store}: {counts['videos']} videos, {counts['queries']} queries, {len(store._packs)} packs; "
          f"{n_bad} damaged")
    if n_bad:
        marked = mark_damaged(path, bad, store)
        print(f"marked for re-extraction: shard(s) {', '.join(marked) or '(none: no shard reports here)'}; the next "
              "`snakemake <target>` re-extracts exactly the damaged items (for a `python -m extract videos` folder: "
              "run the same command again)")
    return 1 if n_bad else 0
