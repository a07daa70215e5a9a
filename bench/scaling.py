"""How extraction and training time grow with video length (a small table from measurements).

    python bench/scaling.py [--lengths 30 120 480] [--clips 75 300 701] [--device auto]

Extraction: one synthetic demo-style h264 video per length (256x192, 10 fps), extracted by a real shard job
with the tiny backbone; prints seconds and clips/s per length. Training: SDST at the paper's QVHighlights
configuration, batch 8, videos of each clip count (701 = the longest TACoS video at 0.5 fps); prints s/it.
Epoch time grows linearly with the number of queries at a fixed it/s (one forward/backward per batch).
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[30, 120, 480], help="video seconds")
    p.add_argument("--clips", type=int, nargs="+", default=[75, 300, 701], help="clips per training video")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from extract.demo import DemoSpec, write_video

    torch.set_num_threads(args.threads)
    extraction = _bench_module("extract")
    training = _bench_module("train")
    for seconds in args.lengths:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "videos"
            folder.mkdir()
            n_obj = max(1, seconds // 30)
            plan = {"duration": float(seconds), "background": [[70, 70, 75], [60, 65, 60]], "drift": 0.03,
                    "noise_seed": 1, "objects": [{"colour": "red", "shape": "circle", "motion": "right",
                                                  "clips": (i * 15 + 2, i * 15 + 6), "size": 0.2}
                                                 for i in range(n_obj)]}
            write_video(folder / "v.mp4", plan, DemoSpec())
            r = extraction.bench_shard(str(folder), "tiny", 1, 32, args.device, None)
            print(json.dumps({"what": "extraction_vs_length", "video_seconds": seconds, "clips": r["clips"],
                              "seconds": r["seconds"], "clips_per_s": r["clips_per_s"], "device": r["device"]}))
    for clips in args.clips:
        r = training.bench("sdst", 8, 5, args.device, clips=clips)
        print(json.dumps({"what": "training_vs_length", "clips": clips, "batch": 8,
                          "seconds_per_it": round(1 / r["it_per_s"], 3), "device": r["device"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
