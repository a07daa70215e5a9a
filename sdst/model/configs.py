"""Configuration dataclasses of every model arch, free of torch so the workflow can resolve and validate
configurations without importing it. The defaults are the paper's values, each with its table; ``value(...)``
gives each field's allowed values (sdst.values), checked when the workflow loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdst.values import check_values, value


@dataclass
class SDSTConfig:
    hidden_dim: int = value(256, ge=1)  # F (Tab. A)
    num_queries: int = value(30, ge=1)  # M (Tab. A; TACoS 5)
    heads: int = value(8, ge=1)  # every attention block (Tab. A)
    ffn_ratio: int = value(4, ge=1)  # (Tab. A)
    input_dropout: float = value(0.5, ge=0, lt=1)  # dropout of the input projections F_v, F_t (Tab. A)
    droppath: float = value(0.25, ge=0, lt=1)  # (Tab. A)
    attn_dropout: float = value(0.0, ge=0, lt=1)  # (Tab. A)
    levels: list[int] = value([-4, -3, -2, -1], min_len=1)  # cached layers per refinement step,
    #   indices into the cache's K layers; [-1, -1, -1, -1] = last layer only, K = 4 steps (Tab. 4, Tab. K)
    text_levels: list[int] | None = value(None, min_len=1)  # cached text layers per step; None = same as `levels`
    share_weights: bool = value(True)  # one SDST layer for all levels (Tab. J)
    sparse_attention: str = value("rdsa", choices=("rdsa", "deformable_ca", "standard_ca"))  # (Tab. 5)
    query_init: str = value("learned", choices=("learned", "mixed", "pure"))  # (Tab. 5, DINO's query selection)
    sampling_points: str = value("lcr", choices=("c", "lr", "lcr"))  # (Tab. M)
    context_cnn: bool = value(True)  # RDSA's context CNN (Tab. M)
    deform_points: int = value(4, ge=1)  # sampling points per head (Tab. A)
    deform_heads: int = value(8, ge=1)  # [decided]
    deform_query_dim: int = value(64, ge=1)  # Q̂ dimension (§A)
    sparse_order: list[str] = value(["ca", "sa", "deform", "ffn"], choices=("ca", "sa", "deform", "ffn"))  # (Tab. N; omit
    #   a module to switch it off, Tab. 7)
    condition: str = value("ffn", choices=("raw", "ca", "sa", "ffn"))  # dense signal RDSA reads (Tab. 6; raw = V)
    roi_bins: int = value(16, ge=1)  # actionness RoIAlign bins (Tab. A)
    cls_layers: int = value(1, ge=1)  # (Tab. A)
    reg_layers: int = value(3, ge=1)  # (Tab. A)
    act_layers: int = value(3, ge=1)  # (Tab. A)
    act_hidden: int = value(128, ge=1)  # [decided] the paper gives no width; 128 brings the total to Tab. J's 4.10 M
    detach_references: bool = value(True)  # stop gradients through R between levels [decided, DAB-DETR]
    beta_init: float = value(0.0, ge=0, le=1)  # β^ℓ at initialisation (Eq. 3: zero, so D^1 = V at the first level)
    input_norm: str = value("standardise", choices=("standardise", "none"))  # cached features standardised per
    #   layer and channel with training-set statistics before F_v, F_t [decided: InputNorm]; "none" feeds them raw


@dataclass
class ActionFormerConfig:
    """ActionFormer (Zhang et al. 2022) and the backbone x neck family of the seed paper's Tab. I, query-conditioned
    (sdst/model/actionformer.py). Defaults from ActionFormer's code (libs/core/config.py, libs/modeling) unless
    marked [decided]."""
    backbone: str = value("transformer", choices=("transformer", "conv", "sgp"))  # (seed Tab. I)
    neck: str = value("identity", choices=("identity", "fpn"))  # (seed Tab. I)
    hidden_dim: int = value(256, ge=1)  # embedding = FPN = head width [decided: SDST's F (Tab. A); ActionFormer 512 on I3D]
    levels: int = value(4, ge=1)  # pyramid levels, strides 1, 2, ..., 2^(levels-1) [decided: ActionFormer has 6 for 2304 features;
    #   QVHighlights videos have 75 clips, the demo's 10-18]
    regression_bounds: list[float] | None = value(None, ge=0)  # lower bound of each level's regression range in clips (the last
    #   is open); None: ActionFormer's (0, 4), (4, 8), (8, 16), ... (libs/core/config.py regression_range)
    cache_level: int = value(-1)  # cached video layer the detector reads [decided: the last]
    text_level: int | None = value(None)  # cached text layer; None = cache_level
    heads: int = value(4, ge=1)  # backbone self-attention heads (ActionFormer n_head)
    window: int = value(19, ge=0)  # local self-attention window (ActionFormer n_mha_win_size; seed §IV-A); <= 1: global
    embed_layers: int = value(2, ge=0)  # embedding convolutions (ActionFormer backbone_arch[0])
    embed_kernel: int = value(3, ge=1, odd=True)  # centred convolutions (ActionFormer embd_kernel_size)
    stem_layers: int = value(2, ge=0)  # stride-1 blocks (ActionFormer backbone_arch[1]); the branch has levels - 1 blocks
    mlp_ratio: int = value(4, ge=1)  # transformer MLP width (ActionFormer TransformerBlock n_hidden = 4 n_embd)
    fusion_layers: int = value(2, ge=0)  # text cross-attention layers before the backbone [decided]
    fusion_heads: int = value(8, ge=1)  # [decided: SDST's 8 heads (Tab. A)]
    input_dropout: float = value(0.5, ge=0, lt=1)  # dropout of the input projections [decided: as SDST/R2-Tuning (Tab. A)]
    dropout: float = value(0.1, ge=0, lt=1)  # projection/MLP dropout (ActionFormer train_cfg.dropout)
    droppath: float = value(0.1, ge=0, lt=1)  # (ActionFormer train_cfg.droppath)
    head_layers: int = value(3, ge=1)  # conv layers per head incl. the output one (ActionFormer head_num_layers)
    head_kernel: int = value(3, ge=1, odd=True)  # (ActionFormer head_kernel_size)
    sgp_kernel: int = value(3, ge=1, odd=True)  # window-level kernel w of the branch SGP layers (TriDet SGPBlock kernel_size default)
    sgp_k: float = value(1.5, gt=0)  # the larger window-level kernel is ~k (w + 1) (TriDet SGPBlock default)
    sgp_mlp_ratio: float = value(1.5, gt=0)  # SGP MLP width / hidden_dim (TriDet configs: sgp_mlp_dim 768 for 512 channels)
    sgp_groups: int = value(16, ge=1)  # GroupNorm groups (TriDet SGPBlock)
    sgp_init_std: float = value(1.0, ge=0)  # std of the SGP depthwise conv weights (TriDet SGPBlock init_conv_vars default)


@dataclass
class R2TuningConfig:
    """R2-Tuning (Liu et al. 2024) adapted to pooled per-clip features (sdst/model/r2tuning.py). Defaults from
    its configs/_base_/models/model.py unless marked [decided]."""
    hidden_dim: int = value(256, ge=1)  # dims
    levels: list[int] = value([-1, -2, -3, -4], min_len=1)  # cached layers in processing order:
    #   the last k = 4, deepest first (R2Block iterates k-1 -> 0)
    text_levels: list[int] | None = value(None, min_len=1)  # cached text layers per step; None = same as `levels`
    heads: int = value(8, ge=1)  # tem_cfg heads
    ffn_ratio: int = value(4, ge=1)  # tem_cfg ratio
    input_dropout: float = value(0.5, ge=0, lt=1)  # adapter dropout
    droppath: float = value(0.1, ge=0, lt=1)  # tem_cfg droppath
    use_tef: bool = value(True)  # temporal endpoint features appended to the video
    strides: list[int] = value([1, 2, 4, 8], ge=1, min_len=1)  # pyramid strides (increasing powers of 2)
    regression_bounds: list[float] | None = value(None, ge=0)  # None: R2-Tuning's (0, s1), (s1, s2), ..., (s_last, inf)
    head_layers: int = value(2, ge=1)  # ConvHead: conv k3 - ReLU - conv k3
    head_kernel: int = value(3, ge=1, odd=True)  # ConvHead kernal_size
    reg_activation: str = value("exp", choices=("exp", "relu"))  # distances = exp(x) · coef_level (model.py) | relu (ActionFormer)


@dataclass(frozen=True)
class Arch:
    """One registry entry: the config dataclass, and the nn.Module and criterion as "module:Class" (imported only
    when built, sdst.model)."""

    config: type
    model: str
    criterion: str


# The registry: one entry per architecture. The code fingerprint of a run follows its entry's modules
# (sdst.config.code_files, extract.imports), so editing one arch's modules never re-trains another.
ARCHS: dict[str, Arch] = {
    "sdst": Arch(SDSTConfig, "sdst.model.sdst:SDST", "sdst.losses:SetCriterion"),
    "actionformer": Arch(ActionFormerConfig, "sdst.model.actionformer:ActionFormer",
                         "sdst.dense_losses:DenseCriterion"),
    "r2tuning": Arch(R2TuningConfig, "sdst.model.r2tuning:R2Tuning", "sdst.dense_losses:DenseCriterion"),
}
ARCH_CONFIGS: dict[str, type] = {arch: entry.config for arch, entry in ARCHS.items()}


def model_config(arch: str, params: dict | None = None):
    """The arch's config dataclass with ``params`` applied; unknown keys are errors naming the arch."""
    if arch not in ARCH_CONFIGS:
        raise ValueError(f"unknown model arch {arch!r}; registered: {sorted(ARCH_CONFIGS)}")
    cfg_cls = ARCH_CONFIGS[arch]
    params = dict(params or {})
    check_values(cfg_cls, params, f"model arch {arch!r}")  # unknown keys, types, ranges
    return cfg_cls(**params)
