"""Shared fixtures: paths to the real test data beside the checkout, and small generated videos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
VIDEOS = DATA / "videos"
REAL_VIDEOS = sorted(VIDEOS.glob("*.mp4"))


def write_video(path, n_frames=60, fps=15, size=(160, 120), codec="libx264", bframes=2, faststart=False):
    """Encode a small video whose frames differ (moving bar + frame-dependent tint); returns the path."""
    import av

    w, h = size
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"preset": "veryfast", "bf": str(bframes), "threads": "1"}
        else:
            s.options = {"bf": str(bframes)}
            s.codec_context.bit_rate = 600_000
        for i in range(n_frames):
            a = np.full((h, w, 3), 40, np.uint8)
            x = (i * 5) % (w - 12)
            a[:, x : x + 12] = 230
            a[..., 1] = (i * 37) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


@pytest.fixture(scope="session")
def shared_data():
    if not DATA.is_dir():
        pytest.fail(f"test data not found at {DATA} (the shared/ folder must sit beside the checkout)")
    return DATA


SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WORKFLOW_CODE = ["Snakefile", "config.yaml", "workflow", "profiles", "envs", "extract", "sdst"]


def snakemake(proj: Path, work: Path, *args, check=True):
    """Run Snakemake on the workflow in ``proj`` with ``work`` as working directory."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run([SNAKEMAKE, "-s", str(proj / "Snakefile"), "--directory", str(work), *args],
                          capture_output=True, text=True, env=env, cwd=work)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def demo_workflow(tmp_path_factory):
    """The real demo pipeline (2 seeds, rule all), once per test session: (project copy, working directory).

    The workflow code is copied (mtimes kept) so tests can touch sources without touching the checkout.
    """
    base = tmp_path_factory.mktemp("workflow")
    proj, work = base / "proj", base / "work"
    proj.mkdir()
    for name in WORKFLOW_CODE:
        src = ROOT / name
        (shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, proj / name))
    work.mkdir()
    # the README's demo with 2 seeds instead of 3: one round of training jobs on 2 cores instead of two
    text = (proj / "config.yaml").read_text()
    assert "\n  seeds: [0, 1, 2]\n" in text, "config.yaml: train.seeds moved; update this fixture"
    (work / "config.yaml").write_text(text.replace("\n  seeds: [0, 1, 2]\n", "\n  seeds: [0, 1]\n"))
    # rule all: metrics.json, the summary pages and the example figures (what the report shows)
    snakemake(proj, work, "--cores", "2")
    return proj, work


@pytest.fixture
def env_with_venv():
    """Environment for subprocesses: the interpreter running the tests first on PATH (Snakemake shells)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def make_synthetic_cache(root, n_train=48, n_val=16, clips=(10, 16), layers=4, vdim=24, tdim=20, seed=0):
    """A real Zarr feature store with learnable structure, QVHighlights-format annotations and the
    extraction summary stage 2 reads. Each query has a "colour" (one of 4); clips inside its window carry
    that colour's direction in the video features, and the query's tokens carry it in the text features."""
    import json

    from extract.cache import FeatureStore

    root = Path(root)
    rng = np.random.default_rng(seed)
    store = FeatureStore.create(root / "features.zarr", {"synthetic": seed})
    vdirs, tdirs = rng.normal(size=(4, vdim)), rng.normal(size=(4, tdim))
    ann = {}
    qid = 0
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for i in range(n):
            vid = f"{split}{i:03d}"
            t = int(rng.integers(*clips))
            colour = int(rng.integers(4))
            length = int(rng.integers(2, max(3, t // 2)))
            start = int(rng.integers(0, t - length))
            v = rng.normal(size=(layers, t, vdim)) * 0.5
            v[:, start:start + length] += 2.0 * vdirs[colour]
            store.write_video(vid, v.astype(np.float32))
            n_tok = int(rng.integers(4, 9))
            txt = rng.normal(size=(layers, n_tok, tdim)) * 0.5
            txt[:, 1:] += 2.0 * tdirs[colour]
            store.write_query(str(qid), txt.astype(np.float32), vid=vid)
            rows.append({"qid": qid, "query": f"colour {colour}", "duration": t * 2.0, "vid": vid,
                         "relevant_windows": [[start * 2.0, (start + length) * 2.0]],
                         "relevant_clip_ids": list(range(start, start + length)),
                         "saliency_scores": [[4, 3, 4]] * length})
            qid += 1
        path = root / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))
        ann[split] = str(path)
    store.close()
    summary = root / "summary.json"
    summary.write_text(json.dumps({"store": str(root / "features.zarr"), "failed_videos": []}))
    return {"annotations": ann, "summary": str(summary), "store": str(root / "features.zarr")}


def synthetic_run(ann: dict, epochs=3, **train):
    """A resolved run configuration for the synthetic cache (small model, CPU)."""
    from sdst.config import resolve_run

    config = {
        "datasets": {"syn": {"annotations": ann, "videos": "unused", "backbone": "tiny", "clip_len": 2.0,
                             "saliency": "qvh",
                             "splits": {"train": "train", "select": {"holdout": 0.25}, "report": ["val"]}}},
        "model": {"default": "sdst", "variants": {"sdst": {"arch": "sdst", "hidden_dim": 32, "num_queries": 6,
                                                           "heads": 4, "deform_heads": 4}}},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 5e-4, "warmup_iters": 5, "lr_step": 100,
                  "min_clips": 0, "threads": 1, "device": "cpu", **train},
    }
    return resolve_run(config, "syn", "sdst", seed=0)


def synthetic_checkpoint(path, run_cfg: dict, prepare=None):
    """An untrained model of ``run_cfg`` (the synthetic cache's dims: video 24, text 20, 4 layers), seeded, saved
    as a checkpoint at ``path``; ``prepare(model)`` may set weights first. Returns the model."""
    import torch

    from sdst.checkpoint import save_checkpoint
    from sdst.model import build_model

    torch.manual_seed(0)
    model = build_model(run_cfg["model"]["arch"], run_cfg["model"]["params"], 24, 20, 4)
    if prepare:
        with torch.no_grad():
            prepare(model)
    save_checkpoint(path, {"run": run_cfg, "dims": {"video": 24, "text": 20, "layers": 4, "extraction": None},
                           "model": model.state_dict()})
    return model


def fit_one_batch(model, criterion, batch, steps=60, lr=1e-3):
    """Train `model` on one fixed batch; returns the loss per step and the last step's loss terms."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        losses = criterion(model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"]), batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(float(losses["loss"].detach()))
    return history, losses


def tiny_demo_config(**train) -> dict:
    """config.yaml for a demo of 10 short videos (6 train, 2 selection, 2 val), 2 extraction shards, one seed and
    2 epochs: the smallest run of the real workflow that extracts features and trains (``train`` overrides)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    demo = cfg["datasets"]["demo"]
    demo["generate"].update(videos={"train": 6, "sel": 2, "val": 2}, min_duration=14, max_duration=18, fps=4,
                            width=96, height=72, min_objects=1, max_objects=2, min_window=4, max_window=6)
    demo["annotations"]["sel"] = "resources/demo/demo_sel.jsonl"
    demo["splits"]["select"] = "sel"
    demo["shards"] = 2
    cfg["train"]["seeds"] = [0]
    cfg["train"]["datasets"]["demo"]["epochs"] = 2
    cfg["train"].update(train)
    return cfg


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The tiny demo's generated videos and annotations (``resources/``), made once per session by the workflow's
    own demo_data rule; tests copy them into their working directory."""
    import yaml

    work = tmp_path_factory.mktemp("tiny_demo")
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_demo_config(), sort_keys=False))
    ann = [f"resources/demo/demo_{s}.jsonl" for s in ("train", "sel", "val")]
    snakemake(ROOT, work, "--cores", "2", *ann)
    return work / "resources"


@pytest.fixture(scope="session")
def folder_run(tmp_path_factory):
    """`python -m extract videos` run twice over the shared real videos, a broken file and a queries file:
    (folder, (first process, its summary), (second process, its summary))."""
    if not REAL_VIDEOS:
        pytest.skip(f"{VIDEOS}: the shared real videos are not here")
    base = tmp_path_factory.mktemp("folder")
    videos = base / "videos"
    videos.mkdir()
    for f in REAL_VIDEOS:
        shutil.copy(f, videos / f.name)
    (videos / "broken.mp4").write_bytes(b"not a video")
    (videos / "notes.txt").write_text("not a video either, and not an extension tried")
    (base / "queries.txt").write_text("a rabbit in a meadow\n\ncyclists on a road\n")
    cmd = [sys.executable, "-m", "extract", "videos", "--videos", str(videos), "--out", str(base / "out"),
           "--queries", str(base / "queries.txt"), "--backbone", "tiny", "--no-progress", "--workers", "1"]
    runs = []
    for _ in range(2):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append((proc, json.loads((base / "out" / "summary.json").read_text())))
    return base, runs[0], runs[1]


COLOURS = ("red", "green", "blue", "yellow")


def write_release(root, videos=None, fmt="sdst", layers=5, vdim=32, tdim=24, clips=(8, 12), seed=0, dtype="float16"):
    """QVHighlights-format annotations and pre-extracted features in a peer's layout, written here with numpy from
    the layout's documented shapes (never through the project's export). ``fmt`` sdst: the SDST release,
    ``vid_feats/{vid}.npz`` with ``visual_feats_interm_pooled`` (clips, layers, dim) and ``txt_feats/{qid}.npz`` with
    ``text_feats`` (layers, tokens, dim); moment_detr: ``video/{vid}.npz`` with ``features`` (clips, dim) and
    ``text/qid{qid}.npz`` with ``last_hidden_state`` (tokens, dim). A query has [CLS] plus its word pieces as tokens
    (InternVideo2's tokenisation); clips inside its window carry its colour's direction in every layer, so a model
    can learn it. Returns {"annotations": {split: path}, "videos": folder, "queries": folder}."""
    from extract.tokenizer import build_tokenizer

    root = Path(root)
    rng = np.random.default_rng(seed)
    vdir, qdir = (root / "vid_feats", root / "txt_feats") if fmt == "sdst" else (root / "video", root / "text")
    prefix = "" if fmt == "sdst" else "qid"
    vdir.mkdir(parents=True, exist_ok=True)
    qdir.mkdir(parents=True, exist_ok=True)
    vdirs, tdirs = rng.normal(size=(4, vdim)), rng.normal(size=(4, tdim))
    tokenizer = build_tokenizer("bert-large-19", 512)
    ann, qid = {}, 0
    for split, n in (videos or {"train": 6, "sel": 2, "val": 2}).items():
        rows = []
        for i in range(n):
            vid, t, colour = f"{split}{i:02d}", int(rng.integers(*clips)), int(rng.integers(4))
            length = int(rng.integers(2, max(3, t // 2)))
            start = int(rng.integers(0, t - length))
            v = rng.normal(size=(t, layers, vdim)) * 0.5
            v[start:start + length] += 2.0 * vdirs[colour]
            if fmt == "sdst":
                np.savez(vdir / f"{vid}.npz", visual_feats_interm_pooled=v.astype(dtype))
            else:
                np.savez(vdir / f"{vid}.npz", features=v[:, -1].astype(dtype))
            text = f"the {COLOURS[colour]} shape glides across"
            n_tok = len(tokenizer.ids(text))  # [CLS] + word pieces
            q = rng.normal(size=(layers, n_tok, tdim)) * 0.5
            q[:, 1:] += 2.0 * tdirs[colour]
            if fmt == "sdst":
                np.savez(qdir / f"{prefix}{qid}.npz", text_feats=q.astype(dtype))
            else:
                np.savez(qdir / f"{prefix}{qid}.npz", last_hidden_state=q[-1].astype(dtype))
            rows.append({"qid": qid, "query": text, "duration": t * 2.0, "vid": vid,
                         "relevant_windows": [[start * 2.0, (start + length) * 2.0]],
                         "relevant_clip_ids": list(range(start, start + length)),
                         "saliency_scores": [[4, 3, 4]] * length})
            qid += 1
        path = root / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        ann[split] = str(path)
    return {"annotations": ann, "videos": str(vdir), "queries": str(qdir)}
