"""InternVideo2 vision encoder (stage-2 1B backbone and a tiny demo size), natively in torch.

Module and parameter names follow the official checkpoint below its ``vision_encoder.`` prefix
(OpenGVLab/InternVideo, ``InternVideo2/multi_modality/models/backbones/internvideo2/internvideo2.py``),
so ``InternVideo2Vision.state_dict()`` loads an official state dict directly; the training-only heads
(``clip_decoder``, ``final_clip_decoder``, ``clip_pos_embed``, ``clip_img_pos_embed``) are not part of it.

Shapes: B clips, C = 3 channels, T frames, H = W = img_size, P = (img_size / patch_size)^2 patches per
frame, N = 1 + T * P tokens (CLS first, then patches time-major), D = embed_dim.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from extract.encoder_configs import VISION_CONFIGS, VisionConfig  # noqa: F401 - where callers look for them


# ----------------------------------------------------------------------------------------------- layers
class RMSNorm(nn.Module):
    """Weight-only RMS normalisation over the last dim, computed in fp32, returned in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * x).to(dtype)


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma``; applied in fp32 with autocast off (as the official force_fp32)."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (x.float() * self.gamma.float()).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention; q/k RMS-normalised over all D dims *before* the head split."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm = RMSNorm(dim, eps)
        self.k_norm = RMSNorm(dim, eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, N, D) -> (B, N, D)."""
        B, N, D = x.shape
        # qkv output columns are [q | k | v], each D wide with the heads contiguous inside (official reshape
        # (B, N, 3, H, D/H)).
        q, k, v = self.qkv(x).split(D, dim=-1)
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        q, k, v = (t.view(B, N, self.num_heads, D // self.num_heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim), as the reference
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, gelu: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate={"exact": "none", "tanh": "tanh"}[gelu])
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: x += ls1(attn(norm1(x))); x += ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = RMSNorm(d, cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.norm_eps)
        self.ls1 = LayerScale(d, cfg.layerscale_init)
        self.norm2 = RMSNorm(d, cfg.norm_eps)
        self.mlp = Mlp(d, cfg.mlp_hidden, cfg.gelu)
        self.ls2 = LayerScale(d, cfg.layerscale_init)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv3d with kernel = stride = (1, p, p): (B, 3, T, H, W) -> (B, T * P, D), time-major."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=(1, p, p), stride=(1, p, p))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, T, h, w) -> (B, T*h*w, D)


class CrossAttention(nn.Module):
    """Cross-attention with bias-free q/k/v linears plus separate q/k/v bias vectors (official layout)."""

    def __init__(self, dim: int, num_heads: int, out_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x_q: Tensor, x_k: Tensor, x_v: Tensor) -> Tensor:
        """x_q (B, M, D), x_k / x_v (B, N, D) -> (B, M, out_dim)."""
        B, M, D = x_q.shape
        h = self.num_heads
        q = F.linear(x_q, self.q.weight, self.q_bias).view(B, M, h, D // h).transpose(1, 2)
        k = F.linear(x_k, self.k.weight, self.k_bias).view(B, -1, h, D // h).transpose(1, 2)
        v = F.linear(x_v, self.v.weight, self.v_bias).view(B, -1, h, D // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, M, D))


class AttentionPoolingBlock(nn.Module):
    """The ``clip_projector`` (SDST's AdaptivePool, Eq. 15): tokens (B, N, D) -> (B, clip_embed_dim).

    Query = mean over all tokens (CLS included); LayerNorm (eps 1e-5) separately on q, k, v inputs;
    multi-head cross-attention; no residual and no norm after.
    """

    def __init__(self, dim: int, num_heads: int, out_dim: int):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = CrossAttention(dim, num_heads, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        q = self.norm1_q(x.mean(1, keepdim=True))
        return self.cross_attn(q, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


# ------------------------------------------------------------------------------------ positional tables
def interpolate_pos_embed_time(table: Tensor, frames: int, patches_per_frame: int) -> Tensor:
    """Resample a (1, 1 + T0 * P, D) table to ``frames`` along time, per spatial position.

    Linear interpolation with the official semantics (``F.interpolate(mode="linear")``, align_corners
    False, so 8 -> 4 averages frame pairs and the ends are clamped); the CLS row is kept as it is.
    """
    rows, dim = table.shape[-2:]
    t0, rem = divmod(rows - 1, patches_per_frame)
    if rem or t0 < 1:
        raise ValueError(f"pos_embed with {rows} rows is not 1 + T * {patches_per_frame} for any T >= 1")
    if t0 == frames:
        return table
    cls, grid = table[:, :1], table[:, 1:].reshape(t0, patches_per_frame, dim)
    grid = grid.permute(1, 2, 0).float()  # (P, D, T0): interpolate along the last axis
    grid = F.interpolate(grid, size=frames, mode="linear", align_corners=False).to(table.dtype)
    return torch.cat([cls, grid.permute(2, 0, 1).reshape(1, frames * patches_per_frame, dim)], dim=1)


def sincos_pos_embed(dim: int, grid: int, frames: int) -> Tensor:
    """3-D sine-cosine table (1, 1 + frames * grid^2, dim) used only for random init (CLS row zero).

    A quarter of the channels encodes time, three quarters the 2-D position (half x, half y).
    """
    def one_d(d: int, pos: Tensor) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        ang = pos.double()[:, None] * omega[None]
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    d_t, d_s = dim // 4, dim - dim // 4
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    spatial = torch.cat([one_d(d_s // 2, xs.flatten()), one_d(d_s // 2, ys.flatten())], dim=1)  # (P, d_s)
    temporal = one_d(d_t, torch.arange(frames))  # (T, d_t)
    table = torch.cat([temporal[:, None].expand(-1, grid * grid, -1),
                       spatial[None].expand(frames, -1, -1)], dim=-1).reshape(-1, dim)
    return torch.cat([torch.zeros(1, dim, dtype=table.dtype), table]).float()[None]


# ------------------------------------------------------------------------------------------ poolings
def _pool_attn(model: "InternVideo2Vision", tokens: Tensor) -> Tensor:
    return model.clip_projector(tokens)  # Eq. 15: the frozen pooling block re-applied to layer l


def _pool_mean(model: "InternVideo2Vision", tokens: Tensor) -> Tensor:
    return tokens.mean(1)  # Tab. 3 ablation: mean of the layer's tokens


def _pool_cls(model: "InternVideo2Vision", tokens: Tensor) -> Tensor:
    return tokens[:, 0]  # Tab. 3 ablation: CLS token of the layer


# name -> (pool(model, tokens (B, N, D)) -> (B, D_out), D_out from the config)
POOLINGS: dict[str, tuple[Callable[["InternVideo2Vision", Tensor], Tensor], Callable[[VisionConfig], int]]] = {
    "attn": (_pool_attn, lambda cfg: cfg.clip_embed_dim),
    "mean": (_pool_mean, lambda cfg: cfg.embed_dim),
    "cls": (_pool_cls, lambda cfg: cfg.embed_dim),
}


# ----------------------------------------------------------------------------------------------- model
class InternVideo2Vision(nn.Module):
    """Inference path of the InternVideo2 vision encoder (patch embed, blocks, clip_projector)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.embed_dim, cfg.patches_per_frame
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.num_frames * p, d))
        self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + p, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.clip_projector = AttentionPoolingBlock(d, cfg.clip_num_heads, cfg.clip_embed_dim)

    # -- construction
    @torch.no_grad()
    def init_weights(self) -> None:
        """Random init following the official recipe (uses the current torch RNG)."""
        cfg = self.cfg
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv3d):
                m.reset_parameters()
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
            elif isinstance(m, LayerScale):
                nn.init.constant_(m.gamma, cfg.layerscale_init)
            elif isinstance(m, CrossAttention):
                for b in (m.q_bias, m.k_bias, m.v_bias):
                    nn.init.zeros_(b)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, cfg.grid, cfg.num_frames))
        self.img_pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, cfg.grid, 1))
        for i, blk in enumerate(self.blocks, start=1):  # depth-scaled residual projections
            blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def pooled_dim(self, pooling: str) -> int:
        """Width D_out of ``forward_layers(..., pooling)`` features."""
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {sorted(POOLINGS)}")
        return POOLINGS[pooling][1](self.cfg)

    # -- forward
    def pos_table(self, frames: int) -> Tensor:
        """Positional table (1, 1 + frames * P, D) for an input of ``frames`` frames."""
        if frames == 1:
            return self.img_pos_embed
        return interpolate_pos_embed_time(self.pos_embed, frames, self.cfg.patches_per_frame)

    def embed(self, x: Tensor) -> Tensor:
        """x (B, 3, T, H, W) ImageNet-normalised -> tokens (B, 1 + T * P, D) before the first block."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected video (B, 3, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"expected {self.cfg.img_size}x{self.cfg.img_size} frames, got {tuple(x.shape[-2:])}")
        tokens = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype))
        cls = self.cls_token.expand(x.shape[0], -1, -1).to(tokens.dtype)
        return torch.cat([cls, tokens], dim=1) + self.pos_table(x.shape[2])

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, T, H, W) -> pooled clip embedding (B, clip_embed_dim) = clip_projector(last block)."""
        tokens = self.embed(x)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.clip_projector(tokens)

    def resolve_layers(self, layers: Sequence[int]) -> list[int]:
        """1-based layer indices (negative counts from the end, -1 = last) -> 1-based indices."""
        from extract.layers import resolve_layer_indices

        return resolve_layer_indices(layers, self.cfg.depth, "layer")

    def forward_layers(self, x: Tensor, layers: Sequence[int], pooling: str = "attn") -> Tensor:
        """Pool the token grid after each requested block: x (B, 3, T, H, W) -> (K, B, D_out).

        ``layers``: 1-based block indices (negative from the end). ``pooling``: a key of POOLINGS;
        D_out = clip_embed_dim for "attn", embed_dim for "mean" / "cls". Blocks run once, up to the
        deepest requested one.
        """
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {sorted(POOLINGS)}")
        pool = POOLINGS[pooling][0]
        idx = self.resolve_layers(layers)
        wanted = set(idx)
        pooled: dict[int, Tensor] = {}
        tokens = self.embed(x)
        for i, blk in enumerate(self.blocks[: max(idx)], start=1):
            tokens = blk(tokens)
            if i in wanted:
                pooled[i] = pool(self, tokens)
        return torch.stack([pooled[i] for i in idx])


def resolve_vision_config(name: str | VisionConfig, **overrides) -> VisionConfig:
    """VISION_CONFIGS[name] (or a given config) with non-None ``overrides`` (e.g. gelu, num_frames) applied."""
    if isinstance(name, VisionConfig):
        cfg = name
    elif name in VISION_CONFIGS:
        cfg = VISION_CONFIGS[name]
    else:
        raise ValueError(f"unknown vision config {name!r}; choose from {sorted(VISION_CONFIGS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **overrides) if overrides else cfg


def build_vision(name: str | VisionConfig, seed: int | None = None) -> InternVideo2Vision:
    """Randomly initialised encoder of VISION_CONFIGS[name]; with ``seed`` deterministic (own RNG stream)."""
    cfg = resolve_vision_config(name)
    if seed is None:
        model = InternVideo2Vision(cfg)
        model.init_weights()
        return model.eval()
    with torch.random.fork_rng(devices=[]):  # construction draws from the RNG too (nn.Linear defaults)
        torch.manual_seed(seed)
        model = InternVideo2Vision(cfg)
        model.init_weights()
    return model.eval()


# -------------------------------------------------------------------------------------------- FLOPs
def vision_flops_per_clip(cfg: VisionConfig, frames: int) -> float:
    """FLOPs (2 x multiply-accumulates of the matmuls) of one forward pass on a clip of ``frames`` frames.

    Counts the patch embedding, per block qkv / q.k^T / attn.v / proj / fc1 / fc2, and the pooling block
    (q on the mean token, k and v on all N tokens, attention, proj); norms, softmax and GELU are omitted.
    """
    d, p = cfg.embed_dim, cfg.patches_per_frame
    n = 1 + frames * p
    patch = frames * p * d * 3 * cfg.patch_size ** 2
    block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * cfg.mlp_hidden
    pool = d * d + 2 * n * d * d + 2 * n * d + d * cfg.clip_embed_dim
    return 2.0 * (patch + cfg.depth * block + pool)
