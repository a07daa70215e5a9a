"""Model registry: configuration string -> (config dataclass, module). Variants are config values.

Every model takes ``forward(video (B, K, T, Fv), video_mask (B, T), text (B, K, L, Ft), text_mask (B, L))``
and returns the output dict documented in :mod:`sdst.model.sdst`. A model with constrained parameters (SDST's
β ∈ [0, 1], Eq. 3) also defines ``project_parameters()``, which the training loop calls after every optimizer
step (:func:`project_parameters`). The registry (``ARCHS``, one entry per arch) and the config dataclasses live
in :mod:`sdst.model.configs` (no torch); the modules are imported only when a model is built.
"""

from __future__ import annotations

import importlib

from sdst.model.configs import ARCH_CONFIGS, ARCHS, model_config

__all__ = ["ARCHS", "ARCH_CONFIGS", "arch_modules", "build_criterion", "build_model", "model_config",
           "project_parameters"]


def _load(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def arch_modules(arch: str) -> list[str]:
    """The modules the registry imports for ``arch`` (its model's and its criterion's)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; registered: {', '.join(ARCHS)} (sdst.model.ARCHS)")
    return [ref.split(":")[0] for ref in (ARCHS[arch].model, ARCHS[arch].criterion)]


def build_criterion(arch: str, loss_cfg, matcher_cfg=None):
    """The arch's criterion from the loss weights and the matching costs (None: MatcherConfig defaults)."""
    return _load(ARCHS[arch].criterion)(loss_cfg, matcher_cfg)


def project_parameters(model) -> None:
    """After an optimizer step: project the model's constrained parameters back onto their sets, if it has any
    (``model.project_parameters()``; projected gradient descent instead of a clamp inside forward)."""
    hook = getattr(model, "project_parameters", None)
    if hook is not None:
        hook()


def build_model(arch: str, params: dict | None, video_dim: int, text_dim: int, cache_layers: int | None = None):
    cfg = model_config(arch, params)
    return _load(ARCHS[arch].model)(cfg, video_dim=video_dim, text_dim=text_dim, cache_layers=cache_layers)
