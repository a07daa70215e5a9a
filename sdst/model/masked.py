"""Masked 1-D modules of the dense detectors (ActionFormer libs/modeling/blocks.py): ``(B, C, T)`` tensors with a
``(B, 1, T)`` bool mask. Every module returns zeros at padded positions and zeroes its input there before a
convolution, so a sample's outputs at its valid positions do not depend on how much padding its batch has
(tested in tests/test_comparison_models.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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
