"""Shared fixtures: paths to the real test data beside the checkout, and small generated videos."""

from __future__ import annotations

import os
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


@pytest.fixture
def env_with_venv():
    """Environment for subprocesses: the interpreter running the tests first on PATH (Snakemake shells)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
