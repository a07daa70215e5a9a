"""Building blocks shared by the models: post-norm attention/FFN blocks, MLPs, positional encodings,
masked 1-D sampling (the bilinear sampling ``x[y]`` of Eq. 9) and 1-D RoIAlign (span conversions and IoU:
sdst/model/spans.py).

Conventions: sequences are (B, T, F); masks are bool with True = valid; spans are (centre, width) in
[0, 1] of each sample's *valid* length.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (§A: drop probability 0.25)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class MLP(nn.Module):
    """Linear layers with ReLU between them (§A: ReLU everywhere); ``dims`` = [in, hidden..., out]."""

    def __init__(self, dims: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers += [nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class InputProjection(nn.Module):
    """F_v / F_t of Eq. 2: LN -> Dropout -> Linear -> ReLU -> LN -> Dropout -> Linear ([decided, R2-Tuning])."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, dim),
                                 nn.ReLU(inplace=True), nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x):
        return self.net(x)


class InputNorm(nn.Module):
    """Per-layer, per-channel standardisation of cached features with training-set statistics [decided].

    Frozen-backbone features carry a large component shared by every clip (measured on the demo cache: the
    per-clip spread is ~14% of the magnitude). Dropout 0.5 at the input of F_v/F_t (Tab. A) applied to such
    features turns that shared part into noise that drowns the signal (a fixed batch could not be fitted);
    centring and scaling first removes it. The statistics are buffers, so checkpoints carry them.
    ``enabled=False`` keeps mean 0 and std 1 (``fit`` leaves them): the features pass unchanged but in float32.
    """

    def __init__(self, layers: int, dim: int, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(layers, dim))
        self.register_buffer("std", torch.ones(layers, dim))

    @torch.no_grad()
    def fit(self, arrays, eps: float = 1e-5) -> None:
        """arrays: iterable of (K, N, D) feature arrays (clips or tokens); accumulated in float64."""
        if not self.enabled:
            return
        total = sq = None
        n = 0
        for a in arrays:
            x = torch.as_tensor(a, dtype=torch.float64)
            total = x.sum(1) if total is None else total + x.sum(1)
            sq = (x * x).sum(1) if sq is None else sq + (x * x).sum(1)
            n += x.shape[1]
        if not n:
            return
        mean = total / n
        std = (sq / n - mean * mean).clamp(min=0).sqrt()
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.clamp(min=eps).to(self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, K, N, D), float16 (as cached) or float32 -> standardised float32."""
        return (x.float() - self.mean[None, :, None, :]) / self.std[None, :, None, :]


class TextPool(nn.Module):
    """T^pool: Linear(F -> 1) logits, masked softmax over the tokens [decided, R2-Tuning] (Eq. 16's pooled text)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, T, mask):
        logits = self.score(T).squeeze(-1).masked_fill(~mask, float("-inf"))
        return (logits.softmax(-1).unsqueeze(-1) * T).sum(1)


def sinusoidal(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of positions ``pos`` (...,) -> (..., dim)."""
    half = dim // 2
    freq = temperature ** (torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    angles = pos.float().unsqueeze(-1) / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def temporal_encoding(t: int, dim: int, device) -> torch.Tensor:
    """(T, dim) sinusoidal encoding of clip indices for the temporal self-attention (§A)."""
    return sinusoidal(torch.arange(t, device=device), dim)


def span_encoding(spans: torch.Tensor, dim: int) -> torch.Tensor:
    """(…, 2) spans in [0, 1] -> (…, dim): centre and width each get dim/2 sinusoidal channels (DAB-DETR)."""
    scaled = spans * 2 * math.pi
    return torch.cat([sinusoidal(scaled[..., 0], dim // 2, 20.0), sinusoidal(scaled[..., 1], dim // 2, 20.0)], -1)


def _xavier_(module: nn.MultiheadAttention) -> None:
    nn.init.xavier_uniform_(module.in_proj_weight)
    nn.init.zeros_(module.in_proj_bias)
    nn.init.xavier_uniform_(module.out_proj.weight)
    nn.init.zeros_(module.out_proj.bias)


class AttentionBlock(nn.Module):
    """Post-norm residual attention: x = LN(x + DropPath(MHA(x + pos_q, kv + pos_k, kv))) (§A, Tab. A).

    8 heads, attention dropout 0, Xavier init. ``kv=None`` makes it self-attention.
    """

    def __init__(self, dim: int, heads: int = 8, attn_dropout: float = 0.0, droppath: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        _xavier_(self.attn)
        self.norm = nn.LayerNorm(dim)
        self.drop = DropPath(droppath)

    def forward(self, x, mask=None, kv=None, kv_mask=None, pos_q=None, pos_k=None):
        """x (B, N, F), mask (B, N); kv (B, S, F), kv_mask (B, S) True = valid."""
        self_attn = kv is None
        kv = x if self_attn else kv
        kv_mask = mask if self_attn else kv_mask
        q = x if pos_q is None else x + pos_q
        k = kv if pos_k is None else kv + pos_k
        pad = None if kv_mask is None else ~kv_mask
        if pad is not None:
            # a row whose keys are all padding would give NaN; let it attend to everything (its output is masked)
            pad = pad & ~pad.all(dim=1, keepdim=True)
        out, _ = self.attn(q, k, kv, key_padding_mask=pad, need_weights=False)
        return self.norm(x + self.drop(out))


class FFNBlock(nn.Module):
    """Post-norm point-wise FFN: x = LN(x + DropPath(W2 ReLU(W1 x))), ratio 4, Kaiming init (§A)."""

    def __init__(self, dim: int, ratio: int = 4, droppath: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_uniform_(fc.weight, nonlinearity="relu")
            nn.init.zeros_(fc.bias)
        self.norm = nn.LayerNorm(dim)
        self.drop = DropPath(droppath)

    def forward(self, x, *_, **__):
        return self.norm(x + self.drop(self.fc2(F.relu(self.fc1(x)))))


def sample_1d(x: torch.Tensor, pos: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a sequence at normalised positions (the ``x[y]`` of Eq. 9).

    x (B, T, C); pos (B, N) in [0, 1] of each sample's valid length (values outside are clamped to the
    first/last valid clip); lengths (B,) valid clips. Clip i covers [i, i+1)/len, its centre is (i+0.5)/len.
    Returns (B, N, C).
    """
    length = lengths.to(x.dtype).clamp(min=1).unsqueeze(1)
    idx = (pos * length - 0.5).clamp(min=0.0)
    idx = torch.minimum(idx, length - 1)
    i0 = idx.floor()
    w = (idx - i0).unsqueeze(-1)
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, (length - 1).long())
    gather = lambda i: torch.gather(x, 1, i.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # noqa: E731
    return gather(i0) * (1 - w) + gather(i1) * w


def roi_align_1d(x: torch.Tensor, spans: torch.Tensor, lengths: torch.Tensor, bins: int) -> torch.Tensor:
    """1-D RoIAlign with RoI scale 0 (Tab. A): ``bins`` samples at bin centres of each span.

    x (B, T, C); spans (B, M, 2) (centre, width) in [0, 1]; returns (B, M, bins, C).
    """
    b, m, _ = spans.shape
    start = spans[..., 0] - spans[..., 1] / 2
    frac = (torch.arange(bins, device=x.device, dtype=x.dtype) + 0.5) / bins
    pos = start.unsqueeze(-1) + spans[..., 1].unsqueeze(-1) * frac  # (B, M, bins)
    return sample_1d(x, pos.reshape(b, m * bins), lengths).reshape(b, m, bins, -1)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)
