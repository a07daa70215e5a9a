"""Model registry: configuration string -> (config dataclass, module). Variants are config values.

Every model takes ``forward(video (B, K, T, Fv), video_mask (B, T), text (B, K, L, Ft), text_mask (B, L))``
and returns the output dict documented in :mod:`sdst.model.sdst`. A model with constrained parameters (SDST's
β ∈ [0, 1], Eq. 3) also defines ``project_parameters()``, which the training loop calls after every optimizer
step (:func:`project_parameters`). Config dataclasses live in :mod:`sdst.model.configs` (no torch); the
modules are imported only when a model is built.
"""

from __future__ import annotations

from sdst.model.configs import ARCH_CONFIGS, model_config

__all__ = ["ARCH_CONFIGS", "build_criterion", "build_model", "model_config", "model_classes", "project_parameters"]


def model_classes() -> dict:
    """arch -> nn.Module class (imports torch)."""
    from sdst.model.actionformer import ActionFormer
    from sdst.model.r2tuning import R2Tuning
    from sdst.model.sdst import SDST

    return {"sdst": SDST, "actionformer": ActionFormer, "r2tuning": R2Tuning}


def criterion_classes() -> dict:
    """arch -> criterion class (constructed from sdst.config.LossConfig and MatcherConfig; forward(out, batch)
    -> losses)."""
    from sdst.losses import SetCriterion
    from sdst.model.dense import DenseCriterion

    return {"sdst": SetCriterion, "actionformer": DenseCriterion, "r2tuning": DenseCriterion}


def build_criterion(arch: str, loss_cfg, matcher_cfg=None):
    """The arch's criterion from the loss weights and the matching costs (None: MatcherConfig defaults)."""
    return criterion_classes()[arch](loss_cfg, matcher_cfg)


def project_parameters(model) -> None:
    """After an optimizer step: project the model's constrained parameters back onto their sets, if it has any
    (``model.project_parameters()``; projected gradient descent instead of a clamp inside forward)."""
    hook = getattr(model, "project_parameters", None)
    if hook is not None:
        hook()


def build_model(arch: str, params: dict | None, video_dim: int, text_dim: int, cache_layers: int | None = None):
    cfg = model_config(arch, params)
    return model_classes()[arch](cfg, video_dim=video_dim, text_dim=text_dim, cache_layers=cache_layers)
