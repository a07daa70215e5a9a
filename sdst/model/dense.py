"""Shared parts of the anchor-free dense detectors (ActionFormer family, R2-Tuning): masked 1-D modules,
temporal points over a pyramid, the classification/regression heads, the text fusion, the saliency head,
and :class:`DenseCriterion` (label assignment + focal/DIoU/L1/saliency losses).

Masked module contract (ActionFormer, libs/modeling): ``forward(x (B, C, T), mask (B, 1, T) bool) -> (x, mask)``;
every module here returns zeros at padded positions and zeroes its input there before a convolution, so a
sample's outputs at its valid positions do not depend on how much padding its batch has (tested).

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

from sdst.config import LossConfig
from sdst.losses import float32_loss, layer_wise_nce, sample_positive_clips, sampled_nce, sigmoid_focal, video_level_nce
from sdst.model.layers import AttentionBlock, InputProjection, TextPool, span_cw_to_se

PAD_LOGIT = -20.0  # logit of padded points (sigmoid ~ 2e-9); their spans have zero width as well
CENTER_RADIUS = 1.5  # centre sampling radius in strides (ActionFormer train_cfg.center_sample_radius; R2-Tuning)


# ---------------------------------------------------------------------------------------------------------
# masked 1-D building blocks, (B, C, T) with a (B, 1, T) bool mask
# ---------------------------------------------------------------------------------------------------------
def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Nearest-neighbour downsampling of a (B, 1, T) mask: position j keeps mask[j·stride] (ActionFormer)."""
    return mask[..., ::stride] if stride > 1 else mask


def pad_to_multiple(x: torch.Tensor, mask: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad x (B, C, T) and mask (B, 1, T) at the end so that T is a multiple of ``multiple``."""
    t = x.shape[-1]
    extra = (-t) % multiple
    if extra:
        x = F.pad(x, (0, extra))
        mask = F.pad(mask, (0, extra), value=False)
    return x * mask.to(x.dtype), mask


class MaskedConv1d(nn.Module):
    """Conv1d that reads zeros at padded positions and writes zeros there. Odd kernels are centred
    (padding k//2); ``padding=0`` with kernel = stride gives non-overlapping cells (R2-Tuning's pyramid)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = True,
                 padding: int | None = None):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding,
                              groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)  # (ActionFormer MaskedConv1D)

    def forward(self, x, mask):
        out_mask = downsample_mask(mask, self.stride)
        out = self.conv(x * mask.to(x.dtype))
        return out * out_mask.to(out.dtype), out_mask


class LayerNormC(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor."""

    def forward(self, x):
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MaskedGroupNorm(nn.Module):
    """GroupNorm of (B, C, T) whose statistics run over the valid positions only (nn.GroupNorm would mix in
    the padding, so a sample's output would depend on its batch)."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible into {groups} groups")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, mask):
        b, c, t = x.shape
        m = mask.to(x.dtype).unsqueeze(1)  # (B, 1, 1, T)
        xg = x.reshape(b, self.groups, c // self.groups, t)
        n = (m.sum(-1, keepdim=True) * (c // self.groups)).clamp(min=1)
        mean = (xg * m).sum((2, 3), keepdim=True) / n
        var = (((xg - mean) * m) ** 2).sum((2, 3), keepdim=True) / n
        out = ((xg - mean) / torch.sqrt(var + self.eps)).reshape(b, c, t)
        return (out * self.weight[:, None] + self.bias[:, None]) * mask.to(x.dtype)


class AffineDropPath(nn.Module):
    """Per-channel scale initialised at 1e-4 (LayerScale) followed by stochastic depth (ActionFormer
    blocks.AffineDropPath). [decided] always on, so the parameter count does not depend on the drop rate."""

    def __init__(self, channels: int, p: float = 0.0, init: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1), init))
        self.p = p

    def forward(self, x):
        x = self.scale * x
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        return x * x.new_empty((x.shape[0], 1, 1)).bernoulli_(keep) / keep


def masked_mean_1d(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: x (B, C, T), mask (B, 1, T) -> (B, C, 1)."""
    m = mask.to(x.dtype)
    return (x * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)


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


# ---------------------------------------------------------------------------------------------------------
# label assignment and losses
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def assign_points(points: torch.Tensor, gt: torch.Tensor, radius: float = CENTER_RADIUS):
    """ActionFormer's label assignment (meta_archs.label_points_single_video) for one video.

    points (N, 4) (position, low, high, stride); gt (G, 2) moments as (start, end) in clip units.
    A point is a candidate for a moment if it lies inside the moment's centre region (centre ± radius·stride,
    cut to the moment) and the larger of its two distances to the moment's ends lies in the level's
    regression range; among several candidates the shortest moment wins.
    Returns cls (N,) in {0, 1}, reg (N, 2) target distances / stride, index (N,) of the moment (-1: none).
    """
    n = points.shape[0]
    if gt.numel() == 0:
        return points.new_zeros(n), points.new_zeros(n, 2), torch.full((n,), -1, dtype=torch.long,
                                                                         device=points.device)
    pos, lo, hi, stride = (points[:, i, None] for i in range(4))
    left, right = pos - gt[None, :, 0], gt[None, :, 1] - pos  # (N, G)
    centre = (gt[:, 0] + gt[:, 1])[None] / 2
    inside = torch.minimum(pos - torch.maximum(centre - radius * stride, gt[None, :, 0]),
                           torch.minimum(centre + radius * stride, gt[None, :, 1]) - pos) > 0
    far = torch.maximum(left, right)
    in_range = (far >= lo) & (far <= hi)
    lens = (gt[:, 1] - gt[:, 0])[None].expand(n, -1).masked_fill(~(inside & in_range), math.inf)
    best, idx = lens.min(1)
    cls = torch.isfinite(best).to(points.dtype)
    rows = torch.arange(n, device=points.device)
    reg = torch.stack([left[rows, idx], right[rows, idx]], -1) / stride
    return cls, reg * cls[:, None], torch.where(cls > 0, idx, torch.full_like(idx, -1))


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Distance-IoU loss of segments given as non-negative distances (left, right) from a shared point
    (ActionFormer ctr_diou_loss_1d): 1 - IoU + (centre distance / enclosing length)^2. (M, 2) -> (M,)."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * ((rp - lp) - (rg - lg))
    return 1.0 - iou + (rho / enclosing.clamp(min=eps)) ** 2


class DenseCriterion(nn.Module):
    """Loss of the dense detectors, from sdst.config.LossConfig (float32; no Hungarian matching, so no matcher):

    * ``cls``: sigmoid focal loss (focal_alpha, focal_gamma) over every valid point, summed and divided by
      the number of positive points of the batch (ActionFormer; [decided] the batch count rather than
      ActionFormer's running average, so the criterion is stateless and an exact resume stays exact);
    * ``iou``: DIoU loss on the positive points' decoded segments (ActionFormer), / positives;
    * ``l1``: L1 on (centre, width) in [0, 1] of the positive points' spans (SDST Eq. 18), / positives;
    * ``sal``: SampledNCE ranking of the saliency (R2-Tuning; SDST §C.1);
    * ``align_video`` / ``align_layer``: R2-Tuning's contrastive alignment, when the model outputs
      ``align_video`` (K, B, T, F) and ``align_text`` (K, B, F).
    Returns every weighted term and ``loss``, their sum.
    """

    def __init__(self, cfg: LossConfig | None = None, matcher=None):  # matcher: unused (label assignment)
        super().__init__()
        self.cfg = cfg or LossConfig()

    def targets(self, out: dict, spans: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cls (B, N), reg (B, N, 2) (distances / stride), matched moment (B, N, 2) cw in [0, 1]."""
        points, lengths = out["points"], out["lengths"]
        cls, reg, gt_cw = [], [], []
        for i, t in enumerate(spans):
            t = t.to(points)
            n = lengths[i].to(points.dtype)
            c, r, idx = assign_points(points, span_cw_to_se(t) * n)
            cls.append(c)
            reg.append(r)
            gt_cw.append(t[idx.clamp(min=0)] if len(t) else points.new_zeros(len(points), 2))
        return torch.stack(cls), torch.stack(reg), torch.stack(gt_cw)

    @float32_loss
    def forward(self, out: dict, batch: dict) -> dict:
        c = self.cfg
        cls_t, reg_t, gt_cw = self.targets(out, batch["spans"])
        valid = out["point_mask"]
        pos = (cls_t > 0) & valid
        n_pos = pos.sum().clamp(min=1).float()
        logits = out["pred_logits"].float()
        raw = {"cls": sigmoid_focal(logits[valid], cls_t[valid], c.focal_alpha, c.focal_gamma).sum() / n_pos}
        if pos.any():
            raw["iou"] = diou_loss_1d(out["pred_offsets"][pos].float(), reg_t[pos]).sum() / n_pos
            raw["l1"] = (out["pred_spans"][pos].float() - gt_cw[pos]).abs().sum(-1).sum() / n_pos
        else:
            raw["iou"] = raw["l1"] = out["pred_offsets"].sum() * 0.0
        mask, sal = batch["video_mask"], batch["saliency"]
        spos, has = sample_positive_clips(sal, mask)
        raw["sal"] = sampled_nce(out["saliency"].float(), sal, mask, spos, has, c.temperature)
        if "align_video" in out:
            V, tp = out["align_video"].float(), out["align_text"].float()
            raw["align_video"] = torch.stack(
                [video_level_nce(V[k], tp[k], mask, spos, has, c.temperature) for k in range(V.shape[0])]).mean()
            raw["align_layer"] = layer_wise_nce(V, tp, spos, has, c.temperature)
        weight = {"cls": c.cls, "iou": c.iou, "l1": c.l1, "sal": c.sal, "align_video": c.align_video,
                  "align_layer": c.align_layer}
        losses = {k: v * weight[k] for k, v in raw.items()}
        losses["loss"] = sum(losses.values())
        return losses
