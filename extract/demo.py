"""The embedded demo dataset: synthetic h264 videos with annotated moments, deterministic from a seed.

Each video shows a slowly drifting background and 2-3 objects, each with its own colour, shape and
motion, visible only during its own window (windows are aligned to 2-s clips, as in QVHighlights, and do
not overlap). Every object gets a natural-language query ("a red circle moves from left to right"), so
finding the moment needs the colour/shape words matched to what is on screen while the other objects act
as distractors. Annotations are written in the QVHighlights JSON-lines format (``relevant_windows``,
``relevant_clip_ids`` and ``saliency_scores`` from 3 simulated annotators) so the same parser and
evaluator serve the demo and QVHighlights.

That is the ``appear`` kind (the default). ``kind: events`` (the demo_hard dataset, extract/demo_events.py)
keeps the objects on screen and asks for what happens to them; the two kinds share this module's spec,
video writer, file layout and command.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extract import demo_events, demo_events_render
from extract.demo_shapes import CLIP, SHAPES
from extract.demo_shapes import shape_mask as _shape_mask

COLOURS = {  # name -> RGB; saturated and far apart so even random features separate them
    "red": (230, 30, 30), "green": (30, 200, 50), "blue": (40, 70, 235), "yellow": (240, 225, 30),
    "purple": (150, 40, 200), "orange": (250, 140, 20), "cyan": (30, 220, 230), "white": (245, 245, 245),
}
MOTIONS = {  # name -> (start (x, y), end (x, y)) in frame fractions, and phrases
    "right": (((0.15, 0.5), (0.85, 0.5)), ("moves from left to right", "slides to the right", "travels rightwards across the screen")),
    "left": (((0.85, 0.5), (0.15, 0.5)), ("moves from right to left", "slides to the left", "travels leftwards across the screen")),
    "down": (((0.5, 0.2), (0.5, 0.8)), ("falls from the top to the bottom", "moves downwards", "drops down the frame")),
    "up": (((0.5, 0.8), (0.5, 0.2)), ("rises from the bottom to the top", "moves upwards", "floats up the frame")),
}
TEMPLATES = ("a {c} {s} {m}", "the {c} {s} {m}", "{c} {s} that {m}", "we see a {c} {s} as it {m}")
KINDS = ("appear", "events")


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 0
    videos: dict | None = None  # split -> number of videos
    min_duration: int = 20  # seconds (rounded to whole clips)
    max_duration: int = 36
    fps: int = 10
    width: int = 256
    height: int = 192
    min_objects: int = 2
    max_objects: int = 3
    min_window: int = 4  # seconds (events kind: windows are 1 clip to min(max_window, half the video))
    max_window: int = 12
    kind: str = "appear"  # appear: objects on screen during their windows only | events: extract/demo_events.py
    events: dict | None = None  # the events kind's settings (demo_events.EventSpec)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"demo: kind {self.kind!r}: expected one of {KINDS}")
        if self.kind == "events":
            slots = int(np.prod(self.event_spec().grid))  # raises on a bad value
            if self.max_objects > slots or int(self.min_duration // CLIP) < 4:
                raise ValueError(f"demo: the events kind needs max_objects <= {slots} (events.grid) and "
                                 f"min_duration >= {4 * CLIP:g} s")
        elif self.events is not None:
            raise ValueError("demo: `events` is only for kind: events")
        # every window needs a clip, and a clip of gap on each side: 2 * objects + 1 clips at least
        elif int(self.min_duration // CLIP) < 2 * self.max_objects + 1:
            raise ValueError(f"demo: min_duration {self.min_duration} s ({int(self.min_duration // CLIP)} clips of "
                             f"{CLIP:g} s) cannot hold {self.max_objects} windows with gaps: needs "
                             f"{2 * self.max_objects + 1} clips")

    @classmethod
    def from_config(cls, cfg: dict) -> "DemoSpec":
        return cls(**cfg)

    def event_spec(self) -> demo_events.EventSpec:
        return demo_events.EventSpec.from_config(self.events)

    def record(self) -> dict:
        """The spec as the manifest stores it; the appear kind without the fields it does not use, so the demo's
        manifest reads as it did before the events kind existed."""
        out = dict(self.__dict__)
        if self.kind == "appear":
            del out["kind"], out["events"]
        return out


def plan_video(rng: np.random.Generator, spec: DemoSpec) -> dict:
    return demo_events.plan_video(rng, spec, spec.event_spec()) if spec.kind == "events" else _plan_video(rng, spec)


def _plan_video(rng: np.random.Generator, spec: DemoSpec) -> dict:
    n_clips = int(rng.integers(spec.min_duration // CLIP, spec.max_duration // CLIP + 1))
    duration = n_clips * CLIP
    n_obj = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    colours = rng.choice(list(COLOURS), size=n_obj, replace=False)
    # non-overlapping windows with at least one clip of gap, placed by sampling lengths then gaps
    lengths = rng.integers(spec.min_window // CLIP, spec.max_window // CLIP + 1, size=n_obj)
    while lengths.sum() + n_obj + 1 > n_clips:  # shrink until the windows fit with gaps
        lengths = np.maximum(lengths - 1, 1)
    free = n_clips - lengths.sum()
    gaps = rng.multinomial(free - (n_obj + 1), np.ones(n_obj + 1) / (n_obj + 1)) + 1
    objects, cursor = [], 0
    order = rng.permutation(n_obj)
    for slot, i in enumerate(order):
        cursor += int(gaps[slot])
        start, end = cursor, cursor + int(lengths[slot])
        cursor = end
        objects.append({
            "colour": str(colours[i]), "shape": str(rng.choice(SHAPES)), "motion": str(rng.choice(list(MOTIONS))),
            "clips": (start, end), "size": float(rng.uniform(0.18, 0.26)),
            "phrase": int(rng.integers(len(MOTIONS["right"][1]))), "template": int(rng.integers(len(TEMPLATES))),
        })
    grey = rng.uniform(45, 100, size=(2, 1))  # two near-neutral greys with a slight tint, blended left to right
    background = grey + rng.uniform(-12, 12, size=(2, 3))
    return {"duration": duration, "objects": objects, "background": background.tolist(),
            "drift": float(rng.uniform(0.02, 0.08)), "noise_seed": int(rng.integers(2**31))}


def opacity(t: float, start: float, end: float) -> float:
    """Objects fade in over their first clip and out over their last (windows longer than 2 clips), so the
    edge clips are visibly weaker — which is what the simulated annotators score lower."""
    if end - start <= 2 * CLIP:
        return 1.0
    return float(np.clip(min(t - start, end - t) / CLIP, 0.35, 1.0))


def render_frames(plan: dict, spec: DemoSpec):
    """Yield (H, W, 3) uint8 frames."""
    if plan.get("kind") == "events":
        yield from demo_events_render.render_frames(plan, spec, spec.event_spec())
        return
    w, h, fps = spec.width, spec.height, spec.fps
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg0, bg1 = (np.asarray(c, np.float32) for c in plan["background"])
    ramp = (xx / (w - 1))[..., None]
    texture = np.random.default_rng(plan["noise_seed"]).normal(0, 6, size=(h, w, 1)).astype(np.float32)
    left, right = bg0 * (1 - ramp), bg1 * ramp  # the background is a blend of these, drifting in time
    n_frames = int(round(plan["duration"] * fps))
    for f in range(n_frames):
        t = (f + 0.5) / fps
        phase = 0.5 + 0.5 * np.sin(2 * np.pi * plan["drift"] * t)
        frame = left * phase + right * (1 - 0.5 * phase) + (30 * (1 - phase)) + texture
        for obj in plan["objects"]:
            s, e = obj["clips"][0] * CLIP, obj["clips"][1] * CLIP
            if not s <= t < e:
                continue
            a = (t - s) / (e - s)
            (x0, y0), (x1, y1) = MOTIONS[obj["motion"]][0]
            cx, cy = (x0 + a * (x1 - x0)) * w, (y0 + a * (y1 - y0)) * h
            r = obj["size"] * h
            ys, xs = slice(max(int(cy - 1.3 * r), 0), int(cy + 1.3 * r) + 1), slice(max(int(cx - 1.3 * r), 0), int(cx + 1.3 * r) + 1)
            mask = _shape_mask(obj["shape"], xx[ys, xs], yy[ys, xs], cx, cy, r, angle=0.3 * a)
            alpha = opacity(t, s, e)
            patch = frame[ys, xs]
            patch[mask] = (1 - alpha) * patch[mask] + alpha * np.asarray(COLOURS[obj["colour"]], np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def write_video(path: str | Path, plan: dict, spec: DemoSpec) -> None:
    """h264 (libx264, yuv420p, B-frames) in MP4, one encoder thread so bytes are reproducible."""
    import av

    tmp = Path(str(path) + ".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20", "bf": "2", "threads": "1"}
        for frame in render_frames(plan, spec):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def annotations_for(vid: str, plan: dict, rng: np.random.Generator, first_qid: int) -> list[dict]:
    """One query per object; saliency from 3 simulated annotators (0-4) over the window's 2-s clips."""
    rows = []
    for k, obj in enumerate(plan["objects"]):
        start, end = obj["clips"]
        text = TEMPLATES[obj["template"]].format(
            c=obj["colour"], s=obj["shape"], m=MOTIONS[obj["motion"]][1][obj["phrase"]])
        clip_ids = list(range(start, end))
        scores = []
        for c in clip_ids:
            edge = c in (start, end - 1) and end - start > 2
            base = 3 if edge else 4  # the object fades in/out over the edge clips (see opacity)
            scores.append([int(np.clip(base - rng.binomial(2, 0.2), 1, 4)) for _ in range(3)])
        rows.append({"qid": first_qid + k, "query": text, "duration": plan["duration"], "vid": vid,
                     "relevant_windows": [[start * CLIP, end * CLIP]], "relevant_clip_ids": clip_ids,
                     "saliency_scores": scores})
    return rows


def _render_one(args) -> None:
    path, plan, spec = args
    if not Path(path).is_file():
        write_video(path, plan, spec)


def generate(out_dir: str | Path, spec: DemoSpec, workers: int = 1, progress: bool = True) -> dict:
    """Write ``{out_dir}/videos/*.mp4`` and ``{out_dir}/demo_{split}.jsonl``; returns the manifest."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    jobs, manifest, qid = [], {"spec": spec.record(), "splits": {}}, 0
    for split_index, (split, n_videos) in enumerate(sorted((spec.videos or {}).items())):
        rows = []
        for i in range(n_videos):
            rng = np.random.default_rng([spec.seed, split_index, i])
            vid = f"demo_{split}_{i:04d}"
            plan = plan_video(rng, spec)
            new = (demo_events.annotations(vid, plan, rng, qid, spec.event_spec()) if spec.kind == "events"
                   else annotations_for(vid, plan, rng, qid))
            rows += new
            qid += len(new)
            jobs.append((str(out_dir / "videos" / f"{vid}.mp4"), plan, spec))
        path = out_dir / f"demo_{split}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows))  # like the real files: no final newline
        manifest["splits"][split] = {"videos": n_videos, "queries": len(rows), "file": path.name}
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, workers)) if workers > 1 else _Serial() as pool:
        for _ in tqdm(pool.imap_unordered(_render_one, jobs), total=len(jobs), desc="demo videos", unit="video",
                      disable=not progress, mininterval=5.0):
            pass
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap_unordered(fn, items):
        return map(fn, items)


def add_args(p) -> None:
    p.add_argument("--out", required=True, help="output folder (videos/ and demo_<split>.jsonl inside)")
    p.add_argument("--spec", required=True, help="the dataset's `generate` config as JSON")
    p.add_argument("--workers", type=int, default=1)


def main(args) -> int:
    manifest = generate(args.out, DemoSpec.from_config(json.loads(args.spec)), workers=args.workers)
    for split, m in manifest["splits"].items():
        print(f"demo {split}: {m['videos']} videos, {m['queries']} queries -> {Path(args.out) / m['file']}")
    return 0
