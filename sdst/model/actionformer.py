"""ActionFormer and its backbone x neck family (seed paper 002, §III and Tab. I), conditioned on the text query.

Zhang et al. (ECCV 2022) is a single-stage anchor-free detector: backbone (embedding convolutions, a stem and a
branch of local self-attention transformer layers with stride-2 downsampling between pyramid levels) -> neck
-> classification/regression heads at every temporal point. The seed paper's Tab. I crosses backbones and
necks; each is a registry entry here, chosen independently by ``ActionFormerConfig.backbone`` / ``.neck``:

  * backbones (``BACKBONES``): ``transformer`` (ActionFormer), ``conv`` (1-D convolutional, ActionFormer's
    ConvBackbone), ``sgp`` (TriDet's Scalable-Granularity Perception layers, the seed's Fig. 2);
  * necks (``NECKS``): ``identity`` (ActionFormer's: a LayerNorm per level), ``fpn`` (the seed's refined
    FPN-1D, Eqs. 2-4: lateral 1x1 masked conv, top-down upsampling and addition, depthwise 3x1 masked conv +
    LayerNorm per level).

For grounding, the query conditions the video stream before the backbone (dense.TextFusion, on one cached
layer, ``cache_level``); saliency is the cosine similarity of the finest neck level with the pooled query
(SDST Eq. 16). Every module follows the masked contract ``forward(x (B, C, T), mask (B, 1, T)) -> (x, mask)``
(backbones and necks map lists of levels); the input is padded to a multiple of the largest stride.
Output dict: :mod:`sdst.model.dense`; criterion: :mod:`sdst.dense_losses`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdst.model.configs import ActionFormerConfig
from sdst.model.dense import DenseHead, PointGenerator, TextFusion, cosine_saliency, dense_outputs, level_bounds
from sdst.model.masked import (AffineDropPath, LayerNormC, MaskedConv1d, MaskedGroupNorm, downsample_mask,
                               masked_mean_1d, pad_to_multiple)
from sdst.model.layers import InputNorm


def _masked_ln(norm: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LayerNorm whose output is zero at padding (LN(0) = bias would leak into the next convolution)."""
    return norm(x) * mask.to(x.dtype)


def _skip_pool(stride: int) -> nn.Module:
    """Max-pooling skip path of a downsampling block (ActionFormer TransformerBlock.pool_skip, TriDet 'max')."""
    return nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2) if stride > 1 else nn.Identity()


class Embedding(nn.Module):
    """ActionFormer's embedding network: ``layers`` x [masked conv k, LayerNorm, ReLU] (embd_with_ln)."""

    def __init__(self, dim: int, layers: int = 2, kernel: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv1d(dim, dim, kernel, bias=False) for _ in range(layers)])
        self.norms = nn.ModuleList([LayerNormC(dim) for _ in range(layers)])

    def forward(self, x, mask):
        for conv, norm in zip(self.convs, self.norms):
            x, mask = conv(x, mask)
            x = F.relu(_masked_ln(norm, x, mask))
        return x, mask


# ---------------------------------------------------------------------------------------------------------
# transformer backbone (ActionFormer libs/modeling/blocks.py: LocalMaskedMHCA, TransformerBlock)
# ---------------------------------------------------------------------------------------------------------
class LocalMHCA(nn.Module):
    """Multi-head conv-attention: depthwise (strided) convs + LayerNorm produce q, k, v on the output grid,
    then self-attention restricted to a local window |i - j| <= window // 2 (window <= 1: global)."""

    def __init__(self, dim: int, heads: int, stride: int = 1, window: int = 19, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by heads {heads}")
        self.heads, self.window = heads, window
        kernel = stride + 1 if stride > 1 else 3  # (ActionFormer MaskedMHCA)
        self.q_conv, self.k_conv, self.v_conv = (MaskedConv1d(dim, dim, kernel, stride, groups=dim, bias=False)
                                                 for _ in range(3))
        self.q_norm, self.k_norm, self.v_norm = LayerNormC(dim), LayerNormC(dim), LayerNormC(dim)
        self.query, self.key, self.value, self.proj = (nn.Conv1d(dim, dim, 1) for _ in range(4))
        self.attn_drop, self.proj_drop = nn.Dropout(attn_dropout), nn.Dropout(proj_dropout)

    def forward(self, x, mask):
        b, c, _ = x.shape
        q, qm = self.q_conv(x, mask)
        k, km = self.k_conv(x, mask)
        v, _ = self.v_conv(x, mask)
        q, k, v = self.query(self.q_norm(q)), self.key(self.k_norm(k)), self.value(self.v_norm(v))
        t = q.shape[-1]
        q, k, v = (z.view(b, self.heads, c // self.heads, t).transpose(2, 3) for z in (q, k, v))  # (B, h, T, d)
        scores = (q / math.sqrt(c // self.heads)) @ k.transpose(-2, -1)
        allowed = km[:, :, None, :].expand(b, 1, t, t)
        if self.window > 1:
            i = torch.arange(t, device=x.device)
            allowed = allowed & ((i[:, None] - i[None, :]).abs() <= self.window // 2)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        att = self.attn_drop(scores.softmax(-1))
        out = (att @ (v * km.transpose(1, 2).unsqueeze(1).to(v.dtype))).transpose(2, 3).reshape(b, c, t)
        return self.proj_drop(self.proj(out)) * qm.to(out.dtype), qm


class TransformerBlock(nn.Module):
    """Pre-LN transformer block with optional stride-2 downsampling (ActionFormer TransformerBlock):
    x' = pool(x) + DropPath(MHCA(LN(x))); x'' = x' + DropPath(MLP(LN(x'))), MLP ratio 4, GELU."""

    def __init__(self, dim: int, heads: int, stride: int = 1, window: int = 19, dropout: float = 0.0,
                 droppath: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        self.ln1, self.ln2 = LayerNormC(dim), LayerNormC(dim)
        self.attn = LocalMHCA(dim, heads, stride, window, 0.0, dropout)
        self.pool_skip = _skip_pool(stride)
        self.mlp = nn.Sequential(nn.Conv1d(dim, dim * mlp_ratio, 1), nn.GELU(), nn.Dropout(dropout),
                                 nn.Conv1d(dim * mlp_ratio, dim, 1), nn.Dropout(dropout))
        self.drop_attn, self.drop_mlp = AffineDropPath(dim, droppath), AffineDropPath(dim, droppath)

    def forward(self, x, mask):
        out, out_mask = self.attn(_masked_ln(self.ln1, x, mask), mask)
        m = out_mask.to(x.dtype)
        out = self.pool_skip(x) * m + self.drop_attn(out)
        out = out + self.drop_mlp(self.mlp(self.ln2(out)) * m)
        return out, out_mask


# ---------------------------------------------------------------------------------------------------------
# conv backbone (ActionFormer ConvBlock)
# ---------------------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """ResNet-like basic block: conv k (stride s) -> ReLU -> conv k, + identity (1x1 strided conv when
    downsampling), ReLU; hidden width 2x (ActionFormer ConvBlock, expansion_factor 2)."""

    def __init__(self, dim: int, kernel: int = 3, stride: int = 1, expansion: int = 2):
        super().__init__()
        self.conv1 = MaskedConv1d(dim, dim * expansion, kernel, stride)
        self.conv2 = MaskedConv1d(dim * expansion, dim, kernel)
        self.down = MaskedConv1d(dim, dim, 1, stride) if stride > 1 else None

    def forward(self, x, mask):
        out, out_mask = self.conv1(x, mask)
        out, _ = self.conv2(F.relu(out), out_mask)
        identity = self.down(x, mask)[0] if self.down is not None else x
        return F.relu(out + identity), out_mask


# ---------------------------------------------------------------------------------------------------------
# SGP backbone (TriDet libs/modeling/blocks.py SGPBlock; seed Fig. 2)
# ---------------------------------------------------------------------------------------------------------
class SGPBlock(nn.Module):
    """Scalable-Granularity Perception layer, replacing self-attention and the second LayerNorm with SGP and
    GroupNorm (seed Fig. 2). With x̂ = LN(x) (after optional max-pool downsampling):

      instant-level branch:  fc(x̂) · ReLU(global_fc(mean_t x̂))        (depthwise 1x1 convs)
      window-level branch:   (conv_w(x̂) + conv_kw(x̂)) · psi(x̂)        (depthwise convs, kernels w, k·w, w)
      x' = x + DropPath(instant + window + x̂);  x'' = x' + DropPath(MLP(GN(x')))

    with conv_kw's kernel round((w + 1)·k), made odd (TriDet). The mean and the GroupNorm statistics run over
    the valid clips only."""

    def __init__(self, dim: int, kernel: int = 3, stride: int = 1, k: float = 1.5, mlp_dim: int | None = None,
                 droppath: float = 0.0, groups: int = 16, init_std: float = 1.0):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"sgp_kernel must be odd, got {kernel}")
        up = round((kernel + 1) * k)
        up = up + 1 if up % 2 == 0 else up
        self.stride = stride
        self.downsample = _skip_pool(stride)
        self.ln = LayerNormC(dim)
        self.gn = MaskedGroupNorm(groups, dim)
        dw = lambda kk: MaskedConv1d(dim, dim, kk, groups=dim)  # noqa: E731
        self.psi, self.fc, self.convw, self.convkw, self.global_fc = dw(kernel), dw(1), dw(kernel), dw(up), dw(1)
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            nn.init.normal_(conv.conv.weight, 0.0, init_std)  # (TriDet reset_params, init_conv_vars)
        hidden = mlp_dim or 4 * dim
        self.mlp = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, dim, 1))
        self.drop_out, self.drop_mlp = AffineDropPath(dim, droppath), AffineDropPath(dim, droppath)

    def forward(self, x, mask):
        x = self.downsample(x)
        mask = downsample_mask(mask, self.stride)
        m = mask.to(x.dtype)
        xn = _masked_ln(self.ln, x, mask)
        phi = F.relu(self.global_fc.conv(masked_mean_1d(xn, mask)))  # (B, C, 1)
        instant = self.fc(xn, mask)[0] * phi
        window = (self.convw(xn, mask)[0] + self.convkw(xn, mask)[0]) * self.psi(xn, mask)[0]
        out = x * m + self.drop_out((instant + window + xn) * m)
        out = out + self.drop_mlp(self.mlp(self.gn(out, mask)) * m)
        return out, mask


# ---------------------------------------------------------------------------------------------------------
# backbones: embedding -> stem (stride 1) -> branch (stride 2 per level); (x, mask) -> (levels, masks)
# ---------------------------------------------------------------------------------------------------------
class PyramidBackbone(nn.Module):
    """Embedding convolutions, ``stem`` blocks at stride 1, then ``levels - 1`` stride-2 blocks; returns the
    stem output and every branch output (ActionFormer ConvTransformerBackbone / ConvBackbone)."""

    def __init__(self, cfg: ActionFormerConfig, stem: list[nn.Module], branch: list[nn.Module]):
        super().__init__()
        self.embed = Embedding(cfg.hidden_dim, cfg.embed_layers, cfg.embed_kernel)
        self.stem, self.branch = nn.ModuleList(stem), nn.ModuleList(branch)

    def forward(self, x, mask):
        x, mask = self.embed(x, mask)
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


def transformer_backbone(cfg: ActionFormerConfig) -> PyramidBackbone:
    f, h, w = cfg.hidden_dim, cfg.heads, cfg.window
    block = lambda s: TransformerBlock(f, h, s, w, cfg.dropout, cfg.droppath, cfg.mlp_ratio)  # noqa: E731
    return PyramidBackbone(cfg, [block(1) for _ in range(cfg.stem_layers)], [block(2) for _ in range(cfg.levels - 1)])


def conv_backbone(cfg: ActionFormerConfig) -> PyramidBackbone:
    f = cfg.hidden_dim
    return PyramidBackbone(cfg, [ConvBlock(f, 3, 1) for _ in range(cfg.stem_layers)],
                           [ConvBlock(f, 3, 2) for _ in range(cfg.levels - 1)])


def sgp_backbone(cfg: ActionFormerConfig) -> PyramidBackbone:
    f = cfg.hidden_dim
    mlp = round(cfg.sgp_mlp_ratio * f)
    block = lambda kernel, s, dp: SGPBlock(f, kernel, s, cfg.sgp_k, mlp, dp, cfg.sgp_groups,  # noqa: E731
                                           cfg.sgp_init_std)
    # TriDet: stem SGP layers use kernel 1 and no drop path; branch layers the window kernel
    return PyramidBackbone(cfg, [block(1, 1, 0.0) for _ in range(cfg.stem_layers)],
                           [block(cfg.sgp_kernel, 2, cfg.droppath) for _ in range(cfg.levels - 1)])


BACKBONES = {"transformer": transformer_backbone, "conv": conv_backbone, "sgp": sgp_backbone}


# ---------------------------------------------------------------------------------------------------------
# necks: (levels, masks) -> (levels, masks)
# ---------------------------------------------------------------------------------------------------------
class IdentityNeck(nn.Module):
    """ActionFormer's FPNIdentity: a LayerNorm per level."""

    def __init__(self, cfg: ActionFormerConfig):
        super().__init__()
        self.norms = nn.ModuleList([LayerNormC(cfg.hidden_dim) for _ in range(cfg.levels)])

    def forward(self, feats, masks):
        return [_masked_ln(n, x, m) for n, x, m in zip(self.norms, feats, masks)], masks


class FPNNeck(nn.Module):
    """Refined FPN-1D (seed Eqs. 2-4; ActionFormer FPN1D): F̃_i = φ_i(F_i) (1x1 masked conv),
    F̂_i = F̃_i + Up(F̂_{i+1}) (nearest, x2), Y_i = LN(ψ_i(F̂_i)) (depthwise 3x1 masked conv)."""

    def __init__(self, cfg: ActionFormerConfig):
        super().__init__()
        f, n = cfg.hidden_dim, cfg.levels
        self.lateral = nn.ModuleList([MaskedConv1d(f, f, 1, bias=False) for _ in range(n)])
        self.refine = nn.ModuleList([MaskedConv1d(f, f, 3, groups=f, bias=False) for _ in range(n)])
        self.norms = nn.ModuleList([LayerNormC(f) for _ in range(n)])

    def forward(self, feats, masks):
        lat = [conv(x, m)[0] for conv, x, m in zip(self.lateral, feats, masks)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], scale_factor=2, mode="nearest")  # Eq. 3
        out = [_masked_ln(n, conv(x, m)[0], m) for conv, n, x, m in zip(self.refine, self.norms, lat, masks)]
        return out, masks


NECKS = {"identity": IdentityNeck, "fpn": FPNNeck}


# ---------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------
class ActionFormer(nn.Module):
    def __init__(self, cfg: ActionFormerConfig, video_dim: int, text_dim: int, cache_layers: int | None = None):
        super().__init__()
        if cfg.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {cfg.backbone!r}")
        if cfg.neck not in NECKS:
            raise ValueError(f"neck must be one of {sorted(NECKS)}, got {cfg.neck!r}")
        if cfg.levels < 1:
            raise ValueError(f"levels must be >= 1, got {cfg.levels}")
        self.cfg = cfg
        self.text_level = cfg.cache_level if cfg.text_level is None else cfg.text_level
        needed = max(-lv if lv < 0 else lv + 1 for lv in (cfg.cache_level, self.text_level))
        if cache_layers is not None and needed > cache_layers:
            raise ValueError(f"cache_level {cfg.cache_level} / text_level {self.text_level} is not among the "
                             f"{cache_layers} cached layers")
        n_cache = cache_layers or needed
        f = cfg.hidden_dim
        self.video_norm = InputNorm(n_cache, video_dim)  # training-set statistics, set by the trainer
        self.text_norm = InputNorm(n_cache, text_dim)
        self.fusion = TextFusion(video_dim, text_dim, f, cfg.fusion_layers, cfg.fusion_heads, cfg.input_dropout)
        self.backbone = BACKBONES[cfg.backbone](cfg)
        self.neck = NECKS[cfg.neck](cfg)
        self.strides = [2 ** i for i in range(cfg.levels)]
        self.points = PointGenerator(self.strides, level_bounds(self.strides, cfg.regression_bounds, "actionformer"))
        self.head = DenseHead(f, cfg.levels, cfg.head_layers, cfg.head_kernel, norm=True, activation="relu")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, video, video_mask, text, text_mask):
        """video (B, K, T, Fv), video_mask (B, T); text (B, K, L, Ft), text_mask (B, L)."""
        t = video.shape[2]
        video, text = self.video_norm(video), self.text_norm(text)
        x, _, tpool = self.fusion(video[:, self.cfg.cache_level], video_mask, text[:, self.text_level], text_mask)
        x, mask = pad_to_multiple(x.transpose(1, 2), video_mask.unsqueeze(1), self.strides[-1])
        feats, masks = self.backbone(x, mask)
        feats, masks = self.neck(feats, masks)
        logits, offsets = self.head(feats, masks)
        points, sizes = self.points(x.shape[-1], x.device)
        saliency = cosine_saliency(feats[0][..., :t].transpose(1, 2), tpool, video_mask)
        return dense_outputs(points, sizes, logits, offsets, video_mask.sum(1), saliency)
