"""R2-Tuning (Liu et al., ECCV 2024): a recurrent side-tuner over the last K frozen-encoder layers, followed by a
temporal convolution pyramid and dense anchor-free heads (repo yeliudev/R2-Tuning, models/adapter.py R2Block,
models/blocks.py ConvPyramid/ConvHead, models/model.py; read for facts only).

Per level ℓ, from the deepest cached layer back (R2-Tuning iterates k-1 -> 0; ``levels`` gives the order),
with shared weights:
  V = F_v([video_ℓ; TEF]), T = F_t(text_ℓ)                     LN-Dropout(0.5)-Linear-ReLU-LN-Dropout-Linear
  V' = V + tanh(s_ℓ) · Σ_l softmax_l(v_map(V)·q_map(T_l)/√F) T_l  clip-to-text attention, s_ℓ zero-initialised
  V' = σ(g_ℓ) V' + (1 - σ(g_ℓ)) D      (not at the first level)  gated merge into the recurrent clip state D
  D  = FFN(SA(CA(V', T) + pos))                                   post-norm, 8 heads, DropPath 0.1
then a pyramid of strides 1, 2, 4, 8 (stride 2^p: p x [conv k2/s2, LN, ReLU], stride 1: ReLU), dense
classification/regression heads (ConvHead: conv3-ReLU-conv3; distances exp(x)·coef_level) shared by the
levels, saliency cos(D, T^pool) and the video-level / layer-wise contrastive alignment of every level's V
and pooled T (``align_video``, ``align_text``).

Adaptation to this cache: R2-Tuning taps CLIP's token grids (B, T, P patches, C) and its query-guided spatial
pooling lets every text token attend over a clip's patches, o = max_l(Σ_p a_lp P_p + T_l), V' = P_cls +
tanh(s)·o. Here each clip has one pooled vector per level (the encoder's own attention pooling, Eq. 15), so
that attention over P = 1 patch is the identity; it is replaced by the clip-to-text attention above
[decided]. The pyramid runs on the input padded to a multiple of the largest stride (R2-Tuning drops the
levels coarser than the video), so short videos keep every level. Output dict: :mod:`sdst.model.dense`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdst.model.configs import R2TuningConfig
from sdst.model.dense import DenseHead, PointGenerator, ca_text_mask, cosine_saliency, dense_outputs, level_bounds
from sdst.model.masked import LayerNormC, MaskedConv1d, pad_to_multiple
from sdst.model.layers import AttentionBlock, FFNBlock, InputNorm, InputProjection, TextPool, temporal_encoding


def temporal_endpoints(video_mask: torch.Tensor) -> torch.Tensor:
    """TEF (R2-Tuning use_tef): (start, end) of every clip as a fraction of the sample's valid length,
    (B, T, 2), zero at padding."""
    n = video_mask.sum(1, keepdim=True).clamp(min=1).float()
    i = torch.arange(video_mask.shape[1], device=video_mask.device).float().unsqueeze(0)
    tef = torch.stack([i / n, (i + 1) / n], -1)
    return tef * video_mask.unsqueeze(-1).float()


class ClipToText(nn.Module):
    """Single-head dot-product attention of each clip over the text tokens (CLS excluded), values = tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.v_map, self.q_map = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, V, T, t_mask):
        scores = self.v_map(V) @ self.q_map(T).transpose(1, 2) / math.sqrt(V.shape[-1])  # (B, T, L)
        pad = ~t_mask & ~(~t_mask).all(1, keepdim=True)  # a query of CLS only attends to it
        return scores.masked_fill(pad.unsqueeze(1), float("-inf")).softmax(-1) @ T


class ConvPyramid(nn.Module):
    """R2-Tuning's ConvPyramid: level with stride 2^p = p x [masked conv k2 s2, LN, ReLU] from the input
    (a chain per level, not shared); stride 1 = ReLU."""

    def __init__(self, dim: int, strides: list[int]):
        super().__init__()
        self.levels = nn.ModuleList()
        for s in strides:
            p = int(math.log2(s))
            self.levels.append(nn.ModuleList([nn.ModuleList([MaskedConv1d(dim, dim, 2, 2, padding=0), LayerNormC(dim)])
                                              for _ in range(p)]))

    def forward(self, x, mask):
        feats, masks = [], []
        for chain in self.levels:
            y, m = x, mask
            for conv, norm in chain:
                y, m = conv(y, m)
                y = norm(y) * m.to(y.dtype)
            feats.append(F.relu(y))
            masks.append(m)
        return feats, masks


class TemporalLayer(nn.Module):
    """R2-Tuning's tem block (order cross_att, self_att, ffn; post-norm; Xavier/Kaiming; DropPath 0.1)."""

    def __init__(self, dim: int, heads: int, ratio: int, droppath: float):
        super().__init__()
        self.ca = AttentionBlock(dim, heads, 0.0, droppath)
        self.sa = AttentionBlock(dim, heads, 0.0, droppath)
        self.ffn = FFNBlock(dim, ratio, droppath)

    def forward(self, D, mask, T, t_mask, pe):
        D = self.ca(D, mask, kv=T, kv_mask=t_mask)
        D = self.sa(D, mask, pos_q=pe, pos_k=pe)
        return self.ffn(D) * mask.unsqueeze(-1).to(D.dtype)


class R2Tuning(nn.Module):
    def __init__(self, cfg: R2TuningConfig, video_dim: int, text_dim: int, cache_layers: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.levels = list(cfg.levels)
        self.text_levels = list(cfg.text_levels) if cfg.text_levels is not None else list(cfg.levels)
        if not self.levels or len(self.text_levels) != len(self.levels):
            raise ValueError(f"text_levels {self.text_levels} must have one entry per level {self.levels}")
        if cache_layers is not None:
            for lvl in self.levels + self.text_levels:
                if not -cache_layers <= lvl < cache_layers:
                    raise ValueError(f"level {lvl} is not among the {cache_layers} cached layers")
        strides = list(cfg.strides)
        if any(s < 1 or s & (s - 1) for s in strides) or strides != sorted(set(strides)):
            raise ValueError(f"strides must be increasing powers of 2, got {strides}")
        n_cache = cache_layers or max(-lv if lv < 0 else lv + 1 for lv in self.levels + self.text_levels)
        f, k = cfg.hidden_dim, len(self.levels)
        self.video_norm = InputNorm(n_cache, video_dim)  # training-set statistics, set by the trainer
        self.text_norm = InputNorm(n_cache, text_dim)
        self.video_map = InputProjection(video_dim + (2 if cfg.use_tef else 0), f, cfg.input_dropout)
        self.query_map = InputProjection(text_dim, f, cfg.input_dropout)
        self.clip_to_text = ClipToText(f)
        self.scale = nn.Parameter(torch.zeros(k))  # tanh(s_ℓ), zero-initialised (R2Block.scale)
        self.gate = nn.Parameter(torch.zeros(max(k - 1, 0)))  # σ(g_ℓ) (R2Block.gate)
        self.temporal = TemporalLayer(f, cfg.heads, cfg.ffn_ratio, cfg.droppath)
        self.text_pool = TextPool(f)
        self.pyramid = ConvPyramid(f, strides)
        self.strides = strides
        self.points = PointGenerator(strides, level_bounds(strides, cfg.regression_bounds, "r2tuning"), centred=True)
        self.head = DenseHead(f, len(strides), cfg.head_layers, cfg.head_kernel, norm=False,
                              activation=cfg.reg_activation)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, video, video_mask, text, text_mask):
        """video (B, K, T, Fv), video_mask (B, T); text (B, K, L, Ft), text_mask (B, L)."""
        t = video.shape[2]
        video, text = self.video_norm(video), self.text_norm(text)
        m = video_mask.unsqueeze(-1).to(video.dtype)
        tef = temporal_endpoints(video_mask).to(video.dtype) if self.cfg.use_tef else None
        kv_mask = ca_text_mask(text_mask)
        pe = temporal_encoding(t, self.cfg.hidden_dim, video.device).to(video.dtype).unsqueeze(0)
        D, align_v, align_t = None, [], []
        for step, (lv, lt) in enumerate(zip(self.levels, self.text_levels)):
            v = video[:, lv] if tef is None else torch.cat([video[:, lv], tef], -1)
            V = self.video_map(v) * m
            T = self.query_map(text[:, lt])
            tpool = self.text_pool(T, text_mask)
            align_v.append(V)
            align_t.append(tpool)
            V = V + self.scale[step].tanh() * self.clip_to_text(V, T, kv_mask) * m
            if D is not None:
                g = self.gate[step - 1].sigmoid()
                V = g * V + (1 - g) * D
            D = self.temporal(V, video_mask, T, kv_mask, pe)
        x, mask = pad_to_multiple(D.transpose(1, 2), video_mask.unsqueeze(1), self.strides[-1])
        feats, masks = self.pyramid(x, mask)
        logits, offsets = self.head(feats, masks)
        points, sizes = self.points(x.shape[-1], x.device)
        out = dense_outputs(points, sizes, logits, offsets, video_mask.sum(1), cosine_saliency(D, tpool, video_mask))
        out.update(align_video=torch.stack(align_v), align_text=torch.stack(align_t))
        return out
