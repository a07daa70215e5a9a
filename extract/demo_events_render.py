"""Rendering of the demo generator's ``events`` kind (extract/demo_events.py): a video plan's frames.

Reads only the plan's objects and their events (an event's strength over time: :func:`extract.demo_events.strength`,
which the simulated annotators' saliency follows too), so tests can check the queries against the frames.
"""

from __future__ import annotations

import numpy as np

from extract.demo_events import PALETTE, EventSpec, strength
from extract.demo_shapes import CLIP, shape_mask

WHITE = np.array((255, 255, 255), np.float32)


def object_state(obj: dict, t: float, es: EventSpec, duration: float) -> tuple[float, np.ndarray, float]:
    """(opacity, RGB, radius factor) of an object at time t; a context object fades in/out over half a second."""
    a, b = obj["present"][0] * CLIP, obj["present"][1] * CLIP
    alpha = float(np.clip(min(t - a if a > 0 else 1.0, b - t if b < duration else 1.0) / 0.5, 0.0, 1.0))
    rgb, scale = np.asarray(PALETTE[obj["colour"]], np.float32), 1.0
    for ev in obj["events"]:
        s = strength(ev, t, es.ramp)
        if s <= 0:
            continue
        if ev["type"] == "vanish":
            alpha *= 1 - s
        elif ev["type"] == "colour":
            rgb = (1 - s) * rgb + s * np.asarray(PALETTE[ev["param"]], np.float32)
        elif ev["type"] in ("grow", "shrink"):
            scale = 1 + ((es.grow if ev["type"] == "grow" else es.shrink) - 1) * s
        elif ev["type"] == "flash" and int(np.floor(t * 2 * es.flash_hz)) % 2 == 1:
            if es.flash == "off":
                alpha *= 1 - s
            else:
                rgb = (1 - s) * rgb + s * WHITE
    return alpha, rgb, scale


def object_centre(obj: dict, t: float, w: int, h: int) -> tuple[float, float]:
    """Pixel centre of an object at time t: its slot, drifting a little."""
    return ((obj["centre"][0] + obj["bob"][0] * np.sin(0.7 * t + obj["phase"])) * w,
            (obj["centre"][1] + obj["bob"][1] * np.cos(0.5 * t + obj["phase"])) * h)


def render_at(plan: dict, spec, es: EventSpec, times):
    """Yield the (H, W, 3) uint8 frame showing each time (seconds)."""
    w, h = spec.width, spec.height
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg0, bg1 = (np.asarray(c, np.float32) for c in plan["background"])
    ramp = (xx / (w - 1))[..., None]
    texture = np.random.default_rng(plan["noise_seed"]).normal(0, 6, size=(h, w, 1)).astype(np.float32)
    left, right = bg0 * (1 - ramp), bg1 * ramp
    for t in times:
        phase = 0.5 + 0.5 * es.drift * np.sin(2 * np.pi * plan["drift"] * t)
        frame = left * phase + right * (1 - 0.5 * phase) + (30 * (1 - phase)) + texture
        for obj in plan["objects"]:
            alpha, rgb, scale = object_state(obj, t, es, plan["duration"])
            if alpha <= 0:
                continue
            cx, cy = object_centre(obj, t, w, h)
            r = obj["size"] * scale * h
            ys = slice(max(int(cy - 1.3 * r), 0), int(cy + 1.3 * r) + 1)
            xs = slice(max(int(cx - 1.3 * r), 0), int(cx + 1.3 * r) + 1)
            mask = shape_mask(obj["shape"], xx[ys, xs], yy[ys, xs], cx, cy, r, angle=obj["spin"] * t)
            patch = frame[ys, xs]
            patch[mask] = (1 - alpha) * patch[mask] + alpha * rgb
        yield np.clip(frame, 0, 255).astype(np.uint8)


def render_frames(plan: dict, spec, es: EventSpec):
    """Yield the video's (H, W, 3) uint8 frames at the spec's fps (frame f shows time (f + 0.5) / fps)."""
    yield from render_at(plan, spec, es, ((f + 0.5) / spec.fps for f in range(int(round(plan["duration"] * spec.fps)))))
