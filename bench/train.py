"""Training speed and memory at the paper's QVHighlights configuration (Tab. A, Tab. D).

    python bench/train.py [--device cpu|cuda] [--batch 32] [--iters 20] [--model sdst] [--threads 2]
    python bench/train.py --dataset demo_hard --batch 16 --threads 1 --model sdst   # the comparison's per-step cost

Builds the configured model for the ``qvh`` dataset (InternVideo2-1B dims: video 768, text 1024, K = 4 cached
layers) and times full training steps (forward, losses with Hungarian matching, backward, AdamW, gradient
clipping) on batches shaped like QVHighlights: 75 clips (150 s at 0.5 fps), queries of 14 tokens (the
measured mean is 13.8) with 1-3 ground-truth windows. Features are random, so the figures are speed
only. Prints it/s (Tab. D: 4.16 it/s for SDST on an RTX 6000) and, on a GPU, peak memory (Tab. D: 3.4 GB)
with mixed precision as in training.
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
import time

ROOT_CONFIG = "config.yaml"


def make_batch(b: int, k: int, t: int, tokens: int, dv: int, dt: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, k, t, dv, generator=g)
    text = torch.randn(b, k, tokens, dt, generator=g)
    vmask = torch.ones(b, t, dtype=torch.bool)
    tmask = torch.ones(b, tokens, dtype=torch.bool)
    spans, sal = [], torch.zeros(b, t)
    for i in range(b):
        n = 1 + i % 3
        c = torch.rand(n, generator=g) * 0.8 + 0.1
        w = torch.rand(n, generator=g) * 0.15 + 0.03
        spans.append(torch.stack([c, w], -1))
        for cc, ww in zip(c.tolist(), w.tolist()):
            sal[i, int((cc - ww / 2) * t):int((cc + ww / 2) * t) + 1] = 3.0
    return {"video": video, "video_mask": vmask, "text": text, "text_mask": tmask, "spans": spans, "saliency": sal}


def bench(model_name: str, batch: int, iters: int, device: str, dataset: str = "qvh", threads: int = 0,
          clips: int = 75) -> dict:
    import torch

    from sdst.config import BACKBONE_DIMS, LossConfig, MatcherConfig, load_config, resolve_run
    from sdst.data import batch_to
    from sdst.infer import autocast_for
    from sdst.model import build_criterion, build_model, project_parameters

    if threads:
        torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = load_config(ROOT_CONFIG)
    run = resolve_run(config, dataset, model_name, 0)
    backbone = config["datasets"][dataset].get("backbone", "1b")  # a dataset's own model config (hidden_dim, ...)
    dv, dt = BACKBONE_DIMS[backbone]["attn"], BACKBONE_DIMS[backbone]["text"]
    model = build_model(run["model"]["arch"], run["model"]["params"], dv, dt, 4).to(device)
    crit = build_criterion(run["model"]["arch"], LossConfig(**run["train"]["loss"]),
                           MatcherConfig(**run["train"]["matcher"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    batches = [batch_to(make_batch(batch, 4, clips, 14, dv, dt, seed=i), device) for i in range(4)]

    def step(b):
        with autocast_for(device, use_amp):
            out = model(b["video"], b["video_mask"], b["text"], b["text_mask"])
        loss = crit(out, b)["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        scaler.step(opt)
        scaler.update()
        project_parameters(model)

    for i in range(3):
        step(batches[i % 4])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(iters):
        step(batches[i % 4])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt_s = (time.perf_counter() - t0) / iters
    out = {"model": model_name, "dataset": dataset, "batch": batch, "clips": clips, "it_per_s": round(1 / dt_s, 3),
           "samples_per_s": round(batch / dt_s, 1), "parameters": model.num_params(),
           "device": (torch.cuda.get_device_name() if device.startswith("cuda")
                      else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"),
           "precision": "amp (bf16/fp16)" if use_amp else "fp32", "paper_it_per_s": 4.16}
    if device.startswith("cuda"):
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        out["paper_peak_mem_gb"] = 3.4
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sdst")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--clips", type=int, default=75, help="clips per video (75 = QVHighlights' 150 s)")
    p.add_argument("--dataset", default="qvh", help="whose model settings and feature sizes (config.yaml)")
    args = p.parse_args(argv)
    print(json.dumps(bench(args.model, args.batch, args.iters, args.device, dataset=args.dataset,
                           threads=args.threads, clips=args.clips)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
