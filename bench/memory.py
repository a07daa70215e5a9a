"""Peak host memory of loading a backbone from an official-layout checkpoint (the first thing an extraction job does).

    python bench/memory.py [--backbone 1b] [--dtype float32] [--format pt] [--keep DIR]
    python bench/memory.py --checkpoint FILE [--backbone 1b]

Writes a random-weight checkpoint of the real architecture in the official InternVideo2 layout
(``extract.backbone.save_official_layout``: ``{"module": {vision_encoder.*, text_encoder.bert.*, training-only
and retrieval heads, two cross-attention fusion layers, MLM head}}``) into a temporary folder, in a subprocess;
then loads it with ``extract.backbone.load_backbone`` in a fresh subprocess, which reports its peak resident
memory (``getrusage`` ru_maxrss) after loading and reading every weight once (as the first forward pass or
``.to("cuda")`` does: memory-mapped pages count once read), its resident memory after the imports and before
loading, and the loaded model's own bytes (parameters + buffers). One JSON line. ``--checkpoint`` measures an existing file instead
(for comparing two checkouts on the same file: run each checkout's bench/memory.py).

The ``1b`` file is ~5.6 GB in float32 and building it takes ~5.5 GB of memory; it is deleted afterwards
unless ``--keep DIR`` is given. The code measured is the checkout this script lies in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the checkout this file lies in, first (and bench/ out of the path: bench/extract.py must not shadow `extract`)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if os.path.abspath(p or ".") != str(ROOT / "bench")]

GB = 1e9


def _rss_now() -> int:
    """Current resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def write(path: str, backbone: str, dtype: str) -> None:
    """Random-weight encoders of ``backbone`` saved in the official layout (model dtype float32, cast if asked)."""
    import torch

    from extract.backbone import BACKBONES, save_official_layout
    from extract.internvideo2 import build_vision
    from extract.text import TextEncoder

    spec = BACKBONES[backbone]
    vision = build_vision(spec["vision"], seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text = TextEncoder(spec["text"])
    vision.to(getattr(torch, dtype))
    text.to(getattr(torch, dtype))
    save_official_layout(vision, text, path, wrapper="module", extra_keys=True)


def load(path: str, backbone: str) -> dict:
    """Load the backbone as an extraction job does; peak and baseline memory of this process."""
    import torch

    import extract
    import extract.internvideo2  # noqa: F401 - imported before the baseline: modules are not the model's memory
    import extract.text  # noqa: F401
    from extract.backbone import load_backbone

    baseline = _rss_now()
    t0 = time.perf_counter()
    vision, text = load_backbone(backbone, path)
    seconds = time.perf_counter() - t0
    loaded_peak = _peak_rss()
    tensors = [t for m in (vision, text) for t in (*m.parameters(), *m.buffers())]
    model_bytes = sum(t.numel() * t.element_size() for t in tensors)
    with torch.no_grad():  # read every weight once, as the first forward pass (or .to("cuda")) does: memory-mapped
        for t in tensors:  # pages count from here on
            t.sum()
    peak = _peak_rss()
    return {"backbone": backbone, "checkpoint_bytes": Path(path).stat().st_size, "model_bytes": model_bytes,
            "model_dtypes": sorted({str(t.dtype).replace("torch.", "") for t in tensors}),
            "peak_rss_bytes": peak, "peak_rss_after_load_before_use_bytes": loaded_peak,
            "rss_before_load_bytes": baseline, "rss_after_use_bytes": _rss_now(),
            "peak_over_model": round(peak / model_bytes, 2),
            "peak_minus_baseline_over_model": round((peak - baseline) / model_bytes, 2),
            "load_seconds": round(seconds, 1), "code": str(Path(extract.__file__).parents[1]),
            "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}


def _child(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench/memory.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="1b", choices=["1b", "tiny"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="dtype of the written checkpoint (the model loads as float32)")
    p.add_argument("--format", default="pt", choices=["pt", "safetensors"])
    p.add_argument("--checkpoint", default=None, help="measure this file instead of writing one")
    p.add_argument("--keep", default=None, help="write the checkpoint into this folder and keep it")
    p.add_argument("--write", default=None, help=argparse.SUPPRESS)  # internal: the writer subprocess
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)  # internal: the measured subprocess
    args = p.parse_args(argv)
    if args.write:
        write(args.write, args.backbone, args.dtype)
        return 0
    if args.load:
        print(json.dumps(load(args.load, args.backbone)))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        path = args.checkpoint
        if path is None:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = str(folder / f"random_{args.backbone}_{args.dtype}.{args.format}")
            _child("--write", path, "--backbone", args.backbone, "--dtype", args.dtype)
        result = json.loads(_child("--load", path, "--backbone", args.backbone).strip().splitlines()[-1])
    result["checkpoint_dtype"] = args.dtype if args.checkpoint is None else "as stored"
    print(json.dumps(result))
    print(f"# {args.backbone}: peak host memory {result['peak_rss_bytes'] / GB:.2f} GB loading and using it "
          f"(before loading {result['rss_before_load_bytes'] / GB:.2f} GB) for a model of "
          f"{result['model_bytes'] / GB:.2f} GB ({', '.join(result['model_dtypes'])}) from a "
          f"{result['checkpoint_bytes'] / GB:.2f} GB file", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
