"""What a cached item was computed from, so that a changed source is re-extracted instead of served stale.

A video item records its file's identity: size, modification time and a SHA-256 of the file's first and last
MiB (``ends``). A resuming job trusts an item whose file has the recorded size and mtime; when either differs
it hashes the two ends (2 MiB read, whatever the file's size) and re-extracts only if the size or the hash
differ, so a copied or touched dataset is not extracted again. ``bench/sources.py`` measures the cost against
hashing whole files. A query item records its exact text and video id (``extract.shard``).

A file rewritten in place with the same size and the same first and last MiB but other bytes in between keeps
its features; encoders and cutting tools rewrite the container header at the start, so that takes an edit
made on purpose.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from extract.cache import ABSENT, ITEM

ENDS = 1 << 20  # bytes hashed at each end of a file


def ends_hash(path: str | Path, size: int | None = None) -> str:
    """SHA-256 of the first and last ``ENDS`` bytes (the whole file when it is at most 2 x ENDS)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size if size is None else size
        digest.update(fh.read(ENDS))
        if size > ENDS:
            fh.seek(max(ENDS, size - ENDS))
            digest.update(fh.read(ENDS))
    return digest.hexdigest()[:32]


def whole_hash(path: str | Path) -> str:
    """SHA-256 of the whole file: imported feature files (``extract.importer``) are small (a QVHighlights video of
    the SDST release is ~1 MB), so their checksum covers every byte."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def file_identity(path: str | Path, whole: bool = False) -> dict:
    """{size, mtime_ns, ends}: what a video item records about its source file; ``whole``: {size, mtime_ns, sha256}
    of every byte instead (an imported feature file)."""
    st = os.stat(path)
    if whole:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": whole_hash(path)}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ends": ends_hash(path, st.st_size)}


def source_change(recorded: dict | None, path: str | Path) -> str | None:
    """None when ``path`` still holds what ``recorded`` (a :func:`file_identity`) describes, else what changed.
    Items written before sources were recorded (no ``recorded``) are trusted: nothing to compare."""
    if not recorded:
        return None
    st = os.stat(path)
    if st.st_size != recorded["size"]:
        return f"source file changed: {recorded['size']} bytes when extracted, {st.st_size} now"
    if st.st_mtime_ns == recorded["mtime_ns"]:
        return None
    if "sha256" in recorded:
        if whole_hash(path) != recorded["sha256"]:
            return "source file changed: same size, other content (SHA-256 differs)"
        return None
    if ends_hash(path, st.st_size) != recorded["ends"]:
        return "source file changed: same size, other content (first/last MiB differ)"
    return None


# -- what a resuming job extracts -----------------------------------------------------------------
def todo_items(store, group: str, keys, damaged: list, changed: list, current) -> list:
    """Items to extract: absent, present but failing verification (read back, size and CRC-32), or computed from
    another source than ``current(key, attrs)`` describes (that returns what changed, or None)."""
    todo = []
    for key in keys:
        problem = store.problem(group, key, deep=True)
        if problem is None:
            problem = current(key, store.entry(group, key).attrs)
            if problem is not None:
                todo.append(key)
                changed.append({"item": f"{ITEM[group]} '{key}'", "reason": problem})
            continue
        todo.append(key)
        if problem != ABSENT:
            damaged.append({"item": f"{ITEM[group]} '{key}'", "reason": problem})
    return todo


def clip_text(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n - 3] + "...")


def query_change(queries):
    def change(key, attrs):
        text, vid = queries[key]
        if attrs.get("query", text) != text:
            return f"query text changed: {clip_text(attrs['query'])} when extracted, {clip_text(text)} now"
        if attrs.get("vid", vid) != vid:
            return f"query now belongs to video '{vid}', was extracted for '{attrs['vid']}'"
        return None

    return change


def video_change(videos, exts, find_video):
    def change(vid, attrs):
        path = find_video(videos, vid, exts)
        return None if path is None else source_change(attrs.get("source"), path)

    return change
