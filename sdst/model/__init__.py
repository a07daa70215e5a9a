"""Model registry: configuration string -> (config dataclass, module). Variants are config values.

Every model takes ``forward(video (B, K, T, Fv), video_mask (B, T), text (B, K, L, Ft), text_mask (B, L))``
and returns the output dict documented in :mod:`sdst.model.sdst`.
"""

from __future__ import annotations

import dataclasses

from sdst.model.sdst import SDST, SDSTConfig

MODELS: dict[str, tuple[type, type]] = {
    "sdst": (SDSTConfig, SDST),
}


def model_config(arch: str, params: dict | None = None):
    """The arch's config dataclass with ``params`` applied; unknown keys are errors naming the arch."""
    if arch not in MODELS:
        raise ValueError(f"unknown model arch {arch!r}; registered: {sorted(MODELS)}")
    cfg_cls = MODELS[arch][0]
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"model arch {arch!r} has no parameter(s) {unknown}; known: {sorted(known)}")
    return cfg_cls(**params)


def build_model(arch: str, params: dict | None, video_dim: int, text_dim: int, cache_layers: int | None = None):
    cfg = model_config(arch, params)
    return MODELS[arch][1](cfg, video_dim=video_dim, text_dim=text_dim, cache_layers=cache_layers)
