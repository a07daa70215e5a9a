"""What keying video items by content costs: hashing the first and last MiB (extract.sources) against whole files.

    python bench/sources.py                      # 64 files of 256 MiB (16 GiB) in a temporary folder
    python bench/sources.py --files 8 --mib 64 --dir /data/scratch

A resuming shard job stats every video of its shard and hashes only those whose size or modification time
changed (a copied or touched dataset: all of them); this measures that worst case. Files are written with random
bytes, then the page cache is dropped where the process may (root), so reads come from the disk. Prints seconds
per file and per GiB for both ways and what 100 GB of video (QVHighlights is ~10k files, ~10 MB each) would
take.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache import drop_caches  # noqa: E402  (bench/cache.py)
from extract.sources import ends_hash  # noqa: E402


def full_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def timed(fn, paths) -> float:
    cold = drop_caches()
    t0 = time.perf_counter()
    for p in paths:
        fn(p)
    return time.perf_counter() - t0, cold


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--mib", type=int, default=256, help="size of each file")
    p.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        paths = []
        block = os.urandom(1 << 20)
        for i in range(args.files):
            path = Path(tmp) / f"v{i:04d}.mp4"
            with open(path, "wb") as fh:
                for j in range(args.mib):
                    fh.write(block[j % 7:] + block[:j % 7])
            paths.append(path)
        gib = args.files * args.mib / 1024
        ends_s, cold = timed(ends_hash, paths)
        full_s, _ = timed(full_hash, paths)
        stat_t0 = time.perf_counter()
        for path in paths:
            os.stat(path)
        stat_s = time.perf_counter() - stat_t0
    print(f"{args.files} files of {args.mib} MiB ({gib:.1f} GiB), page cache {'dropped' if cold else 'NOT dropped'}")
    print(f"{'method':<24}{'s/file':>10}{'s/GiB':>10}{'100 GB, 10k files':>20}")
    for name, secs, per_100gb in (("stat only", stat_s, stat_s / args.files * 10_000),
                                  ("first + last MiB", ends_s, ends_s / args.files * 10_000),
                                  ("whole file", full_s, full_s / gib * 93.1)):
        print(f"{name:<24}{secs / args.files:>10.4f}{secs / gib:>10.2f}{per_100gb:>19.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
