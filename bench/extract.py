"""Extraction throughput: the backbone alone, decoding alone, and whole shard jobs.

    python bench/extract.py model  --backbone 1b --batch 32 [--device cuda] [--iters 10]
    python bench/extract.py decode --videos DIR [--workers 1 2 4] [--resize official decoder] [--repeat N]
    python bench/extract.py shard  --videos DIR [--backbone tiny] [--workers 2] [--batch 32]

``model`` prints clips/s and achieved TFLOP/s (FLOPs per clip from extract.internvideo2.vision_flops_per_clip:
2.315 TFLOP for 1b at 4 frames) for forward_layers over the last 4 layers with attention pooling, bf16
autocast on GPU, fp32 on CPU. ``decode`` prints frames/s of the decoding pool alone (worker processes),
for each resize: ``official`` (full-resolution decode + InternVideo2's torch bicubic, the default) and
``decoder`` (decord's own resize to 224, the fast option). ``shard`` runs a real extraction job (decode overlapped with the model) into a
temporary store and prints clips/s and the fraction of wall time the model was busy.
Every figure names the device it was measured on.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# run as `python bench/<name>.py`: drop bench/ from the import path so that bench/extract.py does not shadow
# the `extract` package
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _os.path.dirname(_os.path.abspath(__file__))]

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bench_model(backbone: str, batch: int, device: str, iters: int, frames: int = 4) -> dict:
    import torch

    from extract.internvideo2 import VISION_CONFIGS, build_vision, vision_flops_per_clip

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_vision(backbone, seed=0).eval().to(device)
    cfg = VISION_CONFIGS[backbone]
    x = torch.randn(batch, 3, frames, cfg.img_size, cfg.img_size, device=device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
                else torch.autocast("cpu", enabled=False))

    def step():
        with torch.inference_mode(), autocast:
            model.forward_layers(x, [-4, -3, -2, -1], pooling="attn")
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up (kernel selection, allocator)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    dt = (time.perf_counter() - t0) / iters
    flops = vision_flops_per_clip(cfg, frames)
    clips_s = batch / dt
    out = {"what": "model", "backbone": backbone, "batch": batch, "device": _device_name(device),
           "dtype": "bf16" if device.startswith("cuda") else "fp32", "seconds_per_batch": round(dt, 4),
           "clips_per_s": round(clips_s, 2), "tflop_per_clip": round(flops / 1e12, 4),
           "achieved_tflops": round(clips_s * flops / 1e12, 3)}
    if device.startswith("cuda"):
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _videos(folder: str, limit: int | None) -> list[tuple[str, str]]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in (".mp4", ".mkv", ".webm", ".avi", ".mov"))
    return [(p.stem, str(p)) for p in files[:limit]]


def bench_decode(folder: str, workers: int, limit: int | None, clip_len: float = 2.0, resize: str = "official",
                 repeat: int = 1) -> dict:
    from extract.decode import DecodeSpec
    from extract.decode_pool import DecodePool

    items = [(f"{vid}#{r}", path) for r in range(repeat) for vid, path in _videos(folder, limit)]
    frames = 0
    t0 = time.perf_counter()
    spec = DecodeSpec(clip_len=clip_len, resize=resize)
    for _, kind, payload in DecodePool(items, spec, workers=workers, timeout_s=600):
        if kind == "chunk":
            frames += payload[1].shape[0] * payload[1].shape[1]
    dt = time.perf_counter() - t0
    return {"what": "decode", "resize": resize, "workers": workers, "videos": len(items), "frames": frames,
            "seconds": round(dt, 2), "frames_per_s": round(frames / dt, 1), "device": _device_name("cpu")}


def bench_shard(folder: str, backbone: str, workers: int, batch: int, device: str, limit: int | None,
                checkpoint: str | None = None) -> dict:
    from extract.cache import FeatureStore
    from extract.shard import run_shard, write_json_atomic

    items = _videos(folder, limit)
    with tempfile.TemporaryDirectory() as tmp:
        ann = Path(tmp) / "ann.jsonl"
        ann.write_text("\n".join(json.dumps({"qid": i, "query": "a benchmark query", "duration": 1.0, "vid": v})
                                 for i, (v, _) in enumerate(items)))
        identity = {"backbone": backbone, "checkpoint": checkpoint, "clip_len": 2.0, "frames_per_clip": 4,
                    "image_size": 224, "resize": "official", "vision_layers": [-4, -3, -2, -1], "pooling": "attn",
                    "text_layers": [-4, -3, -2, -1], "text_max_len": 40, "gelu": "tanh", "seed": 0}
        store = FeatureStore.create(Path(tmp) / "f.zarr", identity)
        store.close()
        meta = Path(tmp) / "store.json"
        write_json_atomic(meta, {"store": str(store.path), "identity": identity,
                                 "identity_hash": store.identity_hash})
        rep = run_shard(meta, [str(ann)], folder, checkpoint, 0, 1, workers=workers, batch_clips=batch,
                        device=device, progress=False)
    return {"what": "shard", "backbone": backbone, "videos": rep["videos"]["total"], "clips": rep["clips"],
            "seconds": round(rep["seconds"], 2), "clips_per_s": round(rep["clips_per_s"], 2),
            "model_busy_fraction": round(rep.get("model_busy_fraction", 0.0), 3), "decode_workers": workers,
            "device": _device_name(rep["device"] or "cpu")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("model")
    m.add_argument("--backbone", default="tiny", choices=["tiny", "1b"])
    m.add_argument("--batch", type=int, default=32)
    m.add_argument("--device", default="auto")
    m.add_argument("--iters", type=int, default=5)
    m.add_argument("--threads", type=int, default=0)
    d = sub.add_parser("decode")
    d.add_argument("--videos", required=True)
    d.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    d.add_argument("--limit", type=int, default=None)
    d.add_argument("--resize", nargs="+", default=["official", "decoder"], choices=["official", "decoder"])
    d.add_argument("--repeat", type=int, default=1, help="decode the folder this many times (short clips)")
    s = sub.add_parser("shard")
    s.add_argument("--videos", required=True)
    s.add_argument("--backbone", default="tiny", choices=["tiny", "1b"])
    s.add_argument("--checkpoint", default=None)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--device", default="auto")
    s.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    if args.what == "model":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        results = [bench_model(args.backbone, args.batch, args.device, args.iters)]
    elif args.what == "decode":
        results = [bench_decode(args.videos, w, args.limit, resize=r, repeat=args.repeat)
                   for r in args.resize for w in args.workers]
    else:
        results = [bench_shard(args.videos, args.backbone, args.workers, args.batch, args.device, args.limit,
                               args.checkpoint)]
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
