"""Span operations shared by the models, the matcher and the losses: (centre, width) <-> (start, end) and the
pairwise temporal IoU, on torch tensors (the evaluator's numpy versions, with the official edge cases, are in
sdst/metrics.py). Spans are in [0, 1] of each sample's valid length unless a caller scales them.
"""

from __future__ import annotations

import torch


def span_cw_to_se(spans: torch.Tensor) -> torch.Tensor:
    return torch.stack([spans[..., 0] - spans[..., 1] / 2, spans[..., 0] + spans[..., 1] / 2], dim=-1)


def span_se_to_cw(spans: torch.Tensor) -> torch.Tensor:
    return torch.stack([(spans[..., 0] + spans[..., 1]) / 2, spans[..., 1] - spans[..., 0]], dim=-1)


def temporal_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (…, N, 2) and (…, G, 2) spans in (start, end) form -> (…, N, G)."""
    inter = (torch.minimum(a[..., :, None, 1], b[..., None, :, 1])
             - torch.maximum(a[..., :, None, 0], b[..., None, :, 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0])[..., :, None] + (b[..., 1] - b[..., 0])[..., None, :] - inter
    return inter / union.clamp(min=1e-6)
