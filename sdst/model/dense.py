"""Heads of the anchor-free dense detectors (ActionFormer family, R2-Tuning): temporal points over a pyramid,
the classification/regression heads and their decoding, the text fusion and the saliency head. Their masked 1-D
modules (ActionFormer's ``forward(x (B, C, T), mask (B, 1, T) bool) -> (x, mask)`` contract) are in
sdst/model/masked.py, their loss (label assignment, focal/DIoU/L1/saliency) in sdst/dense_losses.py.

Geometry, in clip units (clip i covers [i, i + 1) of the feature timeline):
  * the input is padded to a multiple of the largest stride (so short videos work at every level);
  * level l has stride s = 2^l; its point j sits at ``j·s + 0.5`` (the centre of the clip its centred,
    stride-2 kernels are aligned to: ActionFormer's points, mapped to clip centres) or, for pyramids of
    non-overlapping cells (R2-Tuning's stride-2 kernel-2 convolutions), at ``(j + 0.5)·s``;
  * a point is valid iff ``j·s < n`` (n = the sample's valid clips): nearest-neighbour mask downsampling;
  * the heads regress the distances (start, end) to the point divided by the stride, ReLU(scale_l · x)
    with one learnable scale per level (ActionFormer); ``pred_spans`` decodes them to (centre, width) in
    [0, 1] of the valid length, clamped.

Output dict of a dense detector (the contract of sdst.model, plus what DenseCriterion reads):
``pred_logits`` (B, N), ``pred_spans`` (B, N, 2), ``saliency`` (B, T), ``pred_offsets`` (B, N, 2) (distances
/ stride), ``points`` (N, 4) rows (position, range low, range high, stride), ``point_mask`` (B, N),
``lengths`` (B,), ``level_sizes`` (points per level). N = T_pad·(1 + 1/2 + ...). Padded points get a
zero-width span (to_records drops them) and logit -20 [decided].
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdst.model.layers import AttentionBlock, InputProjection, TextPool
from sdst.model.masked import LayerNormC, MaskedConv1d

PAD_LOGIT = -20.0  # logit of padded points (sigmoid ~ 2e-9); their spans have zero width as well


# ---------------------------------------------------------------------------------------------------------
# points, heads, decoding
# ---------------------------------------------------------------------------------------------------------
def level_bounds(strides: list[int], bounds: list[float] | None, rule: str = "actionformer") -> list[tuple]:
    """Regression range (low, high) per level, in clip units, of the larger of a point's two distances.

    ``bounds`` are explicit lower bounds (level l: [b_l, b_{l+1}], the last open). Otherwise ActionFormer's
    rule (libs/core/config.py: (0, 4), (4, 8), (8, 16), ... = [2s, 4s] for stride s, the first from 0, the last
    open) or R2-Tuning's (generator.py: (0, s_1), (s_1, s_2), ..., (s_last, inf))."""
    if bounds is not None:
        if len(bounds) != len(strides):
            raise ValueError(f"regression_bounds {bounds} must give one lower bound per level ({len(strides)})")
        lows = list(bounds)
    elif rule == "actionformer":
        lows = [0.0] + [2.0 * s for s in strides[1:]]
    elif rule == "r2tuning":
        lows = [0.0] + [float(s) for s in strides[1:]]
    else:
        raise ValueError(f"unknown regression-range rule {rule!r}")
    return [(float(lo), float(hi)) for lo, hi in zip(lows, lows[1:] + [math.inf])]


class PointGenerator(nn.Module):
    """Temporal points of every level for a padded length: (N, 4) rows (position, low, high, stride)."""

    def __init__(self, strides: list[int], ranges: list[tuple], centred: bool = False):
        super().__init__()
        self.strides, self.ranges, self.centred = list(strides), list(ranges), centred

    def forward(self, t_pad: int, device) -> tuple[torch.Tensor, list[int]]:
        rows, sizes = [], []
        for s, (lo, hi) in zip(self.strides, self.ranges):
            j = torch.arange(t_pad // s, device=device, dtype=torch.float32)
            pos = (j + 0.5) * s if self.centred else j * s + 0.5
            rows.append(torch.stack([pos, torch.full_like(pos, lo), torch.full_like(pos, hi),
                                     torch.full_like(pos, float(s))], -1))
            sizes.append(len(j))
        return torch.cat(rows), sizes


class Scale(nn.Module):
    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x):
        return x * self.scale


REG_ACTIVATIONS = {
    "relu": lambda x, scale: F.relu(scale(x)),  # ActionFormer: ReLU(scale_l · x)
    "exp": lambda x, scale: scale(x.exp()),  # R2-Tuning: exp(x) · coef_l
}


class ConvStack(nn.Module):
    """(layers - 1) × [masked conv k, (LN), ReLU] then a masked conv k to ``out`` channels (ActionFormer heads)."""

    def __init__(self, dim: int, out: int, layers: int = 3, kernel: int = 3, norm: bool = True):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv1d(dim, dim, kernel, bias=not norm) for _ in range(layers - 1)])
        self.norms = nn.ModuleList([LayerNormC(dim) if norm else nn.Identity() for _ in range(layers - 1)])
        self.out = MaskedConv1d(dim, out, kernel)

    def forward(self, x, mask):
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, mask)
            x = F.relu(norm(x)) * mask.to(x.dtype)
        return self.out(x, mask)


class DenseHead(nn.Module):
    """Classification and regression heads shared across levels (ActionFormer PtTransformerCls/RegHead):
    logit per point (bias at the focal prior 0.01) and (start, end) distances / stride, one scale per level."""

    def __init__(self, dim: int, levels: int, layers: int = 3, kernel: int = 3, norm: bool = True,
                 activation: str = "relu", prior: float = 0.01):
        super().__init__()
        if activation not in REG_ACTIVATIONS:
            raise ValueError(f"reg_activation must be one of {sorted(REG_ACTIVATIONS)}, got {activation!r}")
        self.cls = ConvStack(dim, 1, layers, kernel, norm)
        self.reg = ConvStack(dim, 2, layers, kernel, norm)
        self.scales = nn.ModuleList([Scale() for _ in range(levels)])
        self.activation = activation
        nn.init.constant_(self.cls.out.conv.bias, -math.log((1 - prior) / prior))  # (Lin et al.; ActionFormer)

    def forward(self, feats, masks) -> tuple[torch.Tensor, torch.Tensor]:
        """feats/masks: per level (B, C, T_l) / (B, 1, T_l) -> logits (B, N), offsets (B, N, 2)."""
        act = REG_ACTIVATIONS[self.activation]
        logits, offsets = [], []
        for x, m, scale in zip(feats, masks, self.scales):
            logits.append(self.cls(x, m)[0].squeeze(1))
            off = act(self.reg(x, m)[0], scale) * m.to(x.dtype)
            offsets.append(off.transpose(1, 2))
        return torch.cat(logits, 1), torch.cat(offsets, 1)


def decode_spans(points: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """points (N, 4), offsets (B, N, 2) distances / stride, lengths (B,) -> (B, N, 2) (centre, width) in
    [0, 1] of each sample's valid length, clamped."""
    pos, stride = points[:, 0], points[:, 3]
    n = lengths.to(offsets.dtype).clamp(min=1).unsqueeze(1)
    start = ((pos - offsets[..., 0] * stride) / n).clamp(0.0, 1.0)
    end = ((pos + offsets[..., 1] * stride) / n).clamp(0.0, 1.0)
    return torch.stack([(start + end) / 2, end - start], -1)


def dense_outputs(points, level_sizes, logits, offsets, lengths, saliency) -> dict:
    """The output dict (module docstring) from the heads' outputs over ``points``."""
    stride = points[:, 3].long()
    j = torch.cat([torch.arange(n, device=points.device) for n in level_sizes])
    point_mask = (j * stride).unsqueeze(0) < lengths.unsqueeze(1)  # (B, N): j·s < n
    spans = decode_spans(points, offsets, lengths) * point_mask.unsqueeze(-1).to(offsets.dtype)
    return {"pred_logits": logits.masked_fill(~point_mask, PAD_LOGIT), "pred_spans": spans,
            "saliency": saliency, "pred_offsets": offsets, "points": points, "point_mask": point_mask,
            "lengths": lengths, "level_sizes": list(level_sizes)}


# ---------------------------------------------------------------------------------------------------------
# text fusion and saliency
# ---------------------------------------------------------------------------------------------------------
def ca_text_mask(text_mask: torch.Tensor) -> torch.Tensor:
    """The cross-attentions exclude the CLS token (SDST §3.3.2)."""
    m = text_mask.clone()
    m[:, 0] = False
    return m


class TextFusion(nn.Module):
    """Query conditioning of the video stream before the backbone [decided]:

      V = F_v(video), T = F_t(text)                       (SDST's input projections, LN-Dropout-Linear-ReLU-...)
      H = CA_n(... CA_1(V, T) ...)                        post-norm clip-to-token cross-attention, CLS excluded
      X = H + V ⊙ W T^pool                                additive merge of a Hadamard text modulation

    The cross-attentions give each clip a token-level summary of the query; the Hadamard term makes the
    clip-query agreement linearly readable by the first convolution (Σ_c w_c V_c (W T^pool)_c), as the
    Hadamard fusion of 2D-TAN/MMN does. Returns X (B, T, F) zero at padding, T (B, L, F), T^pool (B, F)."""

    def __init__(self, video_dim: int, text_dim: int, dim: int, layers: int = 2, heads: int = 8,
                 input_dropout: float = 0.5, droppath: float = 0.0):
        super().__init__()
        self.video_proj = InputProjection(video_dim, dim, input_dropout)
        self.text_proj = InputProjection(text_dim, dim, input_dropout)
        self.ca = nn.ModuleList([AttentionBlock(dim, heads, 0.0, droppath) for _ in range(layers)])
        self.text_pool = TextPool(dim)
        self.modulation = nn.Linear(dim, dim)

    def forward(self, video, video_mask, text, text_mask):
        """video (B, T, Fv) and text (B, L, Ft) of one cached layer, already standardised."""
        m = video_mask.unsqueeze(-1).to(video.dtype)
        V = self.video_proj(video) * m
        T = self.text_proj(text)
        tpool = self.text_pool(T, text_mask)
        kv_mask = ca_text_mask(text_mask)
        H = V
        for block in self.ca:
            H = block(H, video_mask, kv=T, kv_mask=kv_mask)
        X = (H + V * self.modulation(tpool).unsqueeze(1)) * m
        return X, T, tpool


def cosine_saliency(feats: torch.Tensor, tpool: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """Saliency = cos(clip feature, T^pool) (SDST Eq. 16): feats (B, T, F), tpool (B, F) -> (B, T), 0 at padding."""
    return F.cosine_similarity(feats, tpool.unsqueeze(1), dim=-1).masked_fill(~video_mask, 0.0)
