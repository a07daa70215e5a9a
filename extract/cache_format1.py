"""Stores of the first layout (format 1: one Zarr array per item under videos/ and queries/), rewritten as packs.

:meth:`extract.cache.FeatureStore.create` calls :func:`convert_format1` when it re-opens such a store. This module
imports nothing of :mod:`extract.cache`: it is handed the store to write into, so that the two do not import each
other.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

GROUPS = ("videos", "queries")  # format 1's item groups, one Zarr group each


def convert_format1(path: Path, root, store, fmt: int) -> None:
    """Rewrite the format-1 store at ``path`` (``root``: its Zarr group) into ``store`` (a FeatureStore opened on it
    for writing while its format attribute is still 1) as packs, then mark it format ``fmt`` and drop the old
    arrays. Resumable: the format attribute changes only after every complete item is in a pack."""
    converted = 0
    for group in GROUPS:
        if group not in root:
            continue
        for name, arr in root[group].arrays():
            item_attrs = arr.attrs.asdict()
            key = name[6:] if name.startswith("%5F%5F") else name
            key = ("__" if name.startswith("%5F%5F") else "") + key
            key = key.replace("%2F", "/").replace("%25", "%")
            if not item_attrs.pop("complete", False) or store.problem(group, key) is None:
                continue
            item_attrs.pop("n_clips", None), item_attrs.pop("n_tokens", None)
            (store.write_video if group == "videos" else store.write_query)(key, arr[...], **item_attrs)
            converted += 1
    store.close()
    root.attrs.update({**root.attrs.asdict(), "format": fmt})
    for group in GROUPS:
        shutil.rmtree(path / group, ignore_errors=True)
    print(f"{path}: converted {converted} items to the packed layout (format {fmt})", file=sys.stderr)
