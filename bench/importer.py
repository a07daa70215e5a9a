"""What importing the SDST release costs: files of QVHighlights' shapes, written here, imported, resumed, compared.

    python bench/importer.py                     # 500 videos and 500 queries in a temporary folder
    python bench/importer.py --videos 2000 --dtype float16 --dir /data/scratch

Videos are (75 clips, 5 layers, 768) and queries (5 layers, 17 tokens, 1024), the shapes of the release's
QVHighlights files; random values in ``--dtype``. Times, with the page cache dropped where the process may (root):
the first import (every file read whole for its checks and SHA-256, written to the store as float16), a resumed
import with nothing changed (a stat per file, and every stored item read back and CRC-checked), and
``python -m extract compare`` of the store against the files. Prints seconds and files per second, and the same
scaled to QVHighlights' 10,148 videos and 10,310 queries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cache import drop_caches  # noqa: E402  (bench/cache.py)
from extract.__main__ import main as cli  # noqa: E402

QVH = (10_148, 10_310)


COLD = []


def timed(argv) -> float:
    COLD.append(drop_caches())
    t0 = time.perf_counter()
    rc = cli([str(a) for a in argv])
    assert rc == 0, rc
    return time.perf_counter() - t0


def preflight(root: Path, n: int) -> float:
    """The workflow's pre-flight check of an imported dataset (extract.checks), which reads every video's header."""
    from extract.checks import imported_problems
    from extract.annotations import Query

    queries = [Query(qid=i, query="q", vid=f"v{i:05d}", duration=150.0, windows=((0.0, 2.0),)) for i in range(n)]
    ds = {"features": {"import": "sdst", "videos": str(root / "vid_feats"), "queries": str(root / "txt_feats")},
          "clip_len": 2.0}
    COLD.append(drop_caches())
    t0 = time.perf_counter()
    problems, _ = imported_problems("bench", ds, queries)
    assert not problems, problems
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=500, help="video files (and as many query files)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        (root / "vid_feats").mkdir()
        (root / "txt_feats").mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.videos):
            np.savez(root / "vid_feats" / f"v{i:05d}.npz",
                     visual_feats_interm_pooled=rng.normal(size=(75, 5, 768)).astype(args.dtype))
            np.savez(root / "txt_feats" / f"{i}.npz", text_feats=rng.normal(size=(5, 17, 1024)).astype(args.dtype))
        mib = sum(f.stat().st_size for f in root.rglob("*.npz")) / 2**20
        cmd = ["import", "--format", "sdst", "--videos", root / "vid_feats", "--queries", root / "txt_feats", "--out",
               root / "out", "--no-progress"]
        first, resumed = timed(cmd), timed(cmd)
        checked = preflight(root, args.videos)
        compared = timed(["compare", "--ours", root / "out", "--theirs", root, "--out", root / "cmp"])
    print(f"\n{args.videos} videos + {args.videos} queries, {args.dtype}, {mib:.0f} MiB of files; page cache "
          f"{'dropped' if all(COLD) else 'NOT dropped (not root): warm reads'} before each step")
    for what, sec, n, qvh in (("import", first, 2 * args.videos, sum(QVH)),
                              ("resumed import, nothing changed", resumed, 2 * args.videos, sum(QVH)),
                              ("compare", compared, 2 * args.videos, sum(QVH)),
                              ("pre-flight check (video headers)", checked, args.videos, QVH[0])):
        print(f"{what:34s} {sec:7.2f} s  {n / sec:7.0f} files/s   QVHighlights: {sec * qvh / n / 60:5.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
