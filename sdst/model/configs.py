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


ARCH_CONFIGS: dict[str, type] = {
    "sdst": SDSTConfig,
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
