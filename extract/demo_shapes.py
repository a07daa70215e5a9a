"""Drawing primitives shared by the demo generator's two kinds (extract/demo.py, extract/demo_events.py)."""

from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
CLIP = 2.0  # seconds; windows and saliency use QVHighlights' 2-s clips


def shape_mask(shape: str, xx, yy, cx, cy, r, angle) -> np.ndarray:
    """Boolean mask of ``shape`` of radius ``r`` centred at (cx, cy), rotated by ``angle``, on the grid (xx, yy)."""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    if shape == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r * 1.1
    return (v <= r * 0.6) & (v >= -r + 1.7 * np.abs(u))  # triangle pointing up in its own frame
