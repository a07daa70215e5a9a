"""Configuration dataclasses of every model arch, free of torch so the workflow can resolve and validate
configurations without importing it. The defaults are the paper's values, each with its table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class SDSTConfig:
    hidden_dim: int = 256  # F (Tab. A)
    num_queries: int = 30  # M (Tab. A; TACoS 5)
    heads: int = 8  # every attention block (Tab. A)
    ffn_ratio: int = 4  # (Tab. A)
    input_dropout: float = 0.5  # dropout of the input projections F_v, F_t (Tab. A)
    droppath: float = 0.25  # (Tab. A)
    attn_dropout: float = 0.0  # (Tab. A)
    levels: list[int] = field(default_factory=lambda: [-4, -3, -2, -1])  # cached layers per refinement step,
    #   indices into the cache's K layers; [-1, -1, -1, -1] = last layer only, K = 4 steps (Tab. 4, Tab. K)
    text_levels: list[int] | None = None  # cached text layers per step; None = same as `levels`
    share_weights: bool = True  # one SDST layer for all levels (Tab. J)
    sparse_attention: str = "rdsa"  # rdsa | deformable_ca | standard_ca (Tab. 5)
    query_init: str = "learned"  # learned | mixed | pure (Tab. 5, DINO's query selection)
    sampling_points: str = "lcr"  # c | lr | lcr (Tab. M)
    context_cnn: bool = True  # RDSA's context CNN (Tab. M)
    deform_points: int = 4  # sampling points per head (Tab. A)
    deform_heads: int = 8  # [decided]
    deform_query_dim: int = 64  # Q̂ dimension (§A)
    sparse_order: list[str] = field(default_factory=lambda: ["ca", "sa", "deform", "ffn"])  # (Tab. N; omit
    #   a module to switch it off, Tab. 7)
    condition: str = "ffn"  # dense signal RDSA reads: raw (V) | ca | sa | ffn (Tab. 6)
    roi_bins: int = 16  # actionness RoIAlign bins (Tab. A)
    cls_layers: int = 1  # (Tab. A)
    reg_layers: int = 3  # (Tab. A)
    act_layers: int = 3  # (Tab. A)
    act_hidden: int = 128  # [decided] the paper gives no width; 128 brings the total to Tab. J's 4.10 M
    detach_references: bool = True  # stop gradients through R between levels [decided, DAB-DETR]


@dataclass
class ActionFormerConfig:
    """ActionFormer (Zhang et al. 2022) and the backbone x neck family of the seed paper's Tab. I, query-conditioned
    (sdst/model/actionformer.py). Defaults from ActionFormer's code (libs/core/config.py, libs/modeling) unless
    marked [decided]."""
    backbone: str = "transformer"  # transformer | conv | sgp (seed Tab. I)
    neck: str = "identity"  # identity | fpn (seed Tab. I)
    hidden_dim: int = 256  # embedding = FPN = head width [decided: SDST's F (Tab. A); ActionFormer 512 on I3D]
    levels: int = 4  # pyramid levels, strides 1, 2, ..., 2^(levels-1) [decided: ActionFormer has 6 for 2304 features;
    #   QVHighlights videos have 75 clips, the demo's 10-18]
    regression_bounds: list[float] | None = None  # lower bound of each level's regression range in clips (the last
    #   is open); None: ActionFormer's (0, 4), (4, 8), (8, 16), ... (libs/core/config.py regression_range)
    cache_level: int = -1  # cached video layer the detector reads [decided: the last]
    text_level: int | None = None  # cached text layer; None = cache_level
    heads: int = 4  # backbone self-attention heads (ActionFormer n_head)
    window: int = 19  # local self-attention window (ActionFormer n_mha_win_size; seed §IV-A); <= 1: global
    embed_layers: int = 2  # embedding convolutions (ActionFormer backbone_arch[0])
    embed_kernel: int = 3  # (ActionFormer embd_kernel_size)
    stem_layers: int = 2  # stride-1 blocks (ActionFormer backbone_arch[1]); the branch has levels - 1 blocks
    mlp_ratio: int = 4  # transformer MLP width (ActionFormer TransformerBlock n_hidden = 4 n_embd)
    fusion_layers: int = 2  # text cross-attention layers before the backbone [decided]
    fusion_heads: int = 8  # [decided: SDST's 8 heads (Tab. A)]
    input_dropout: float = 0.5  # dropout of the input projections [decided: as SDST/R2-Tuning (Tab. A)]
    dropout: float = 0.1  # projection/MLP dropout (ActionFormer train_cfg.dropout)
    droppath: float = 0.1  # (ActionFormer train_cfg.droppath)
    head_layers: int = 3  # conv layers per head incl. the output one (ActionFormer head_num_layers)
    head_kernel: int = 3  # (ActionFormer head_kernel_size)
    sgp_kernel: int = 3  # window-level kernel w of the branch SGP layers (TriDet SGPBlock kernel_size default)
    sgp_k: float = 1.5  # the larger window-level kernel is ~k (w + 1) (TriDet SGPBlock default)
    sgp_mlp_ratio: float = 1.5  # SGP MLP width / hidden_dim (TriDet configs: sgp_mlp_dim 768 for 512 channels)
    sgp_groups: int = 16  # GroupNorm groups (TriDet SGPBlock)
    sgp_init_std: float = 1.0  # std of the SGP depthwise conv weights (TriDet SGPBlock init_conv_vars default)


@dataclass
class R2TuningConfig:
    """R2-Tuning (Liu et al. 2024) adapted to pooled per-clip features (sdst/model/r2tuning.py). Defaults from
    its configs/_base_/models/model.py unless marked [decided]."""
    hidden_dim: int = 256  # dims
    levels: list[int] = field(default_factory=lambda: [-1, -2, -3, -4])  # cached layers in processing order:
    #   the last k = 4, deepest first (R2Block iterates k-1 -> 0)
    text_levels: list[int] | None = None  # cached text layers per step; None = same as `levels`
    heads: int = 8  # tem_cfg heads
    ffn_ratio: int = 4  # tem_cfg ratio
    input_dropout: float = 0.5  # adapter dropout
    droppath: float = 0.1  # tem_cfg droppath
    use_tef: bool = True  # temporal endpoint features appended to the video
    strides: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # pyramid strides
    regression_bounds: list[float] | None = None  # None: R2-Tuning's (0, s1), (s1, s2), ..., (s_last, inf)
    head_layers: int = 2  # ConvHead: conv k3 - ReLU - conv k3
    head_kernel: int = 3  # ConvHead kernal_size
    reg_activation: str = "exp"  # distances = exp(x) · coef_level (model.py) | relu (ActionFormer)


ARCH_CONFIGS: dict[str, type] = {
    "sdst": SDSTConfig,
    "actionformer": ActionFormerConfig,
    "r2tuning": R2TuningConfig,
}


def model_config(arch: str, params: dict | None = None):
    """The arch's config dataclass with ``params`` applied; unknown keys are errors naming the arch."""
    if arch not in ARCH_CONFIGS:
        raise ValueError(f"unknown model arch {arch!r}; registered: {sorted(ARCH_CONFIGS)}")
    cfg_cls = ARCH_CONFIGS[arch]
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"model arch {arch!r} has no parameter(s) {unknown}; known: {sorted(known)}")
    return cfg_cls(**params)
