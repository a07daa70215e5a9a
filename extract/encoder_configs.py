"""The encoders' sizes, free of torch and transformers: the workflow checks configured layers against them at
every DAG build (extract.identity.check_layers) without importing the models. The models themselves are
extract.internvideo2 (vision) and extract.text (text), which take their configurations from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from extract.tokenizer import minilm_dir


@dataclass(frozen=True)
class VisionConfig:
    embed_dim: int  # D, token width
    depth: int  # number of transformer blocks
    num_heads: int  # attention heads per block
    mlp_hidden: int  # MLP hidden width (1B: 1408 * 48/11 = 6144)
    patch_size: int  # spatial patch (tubelet size 1 in time)
    img_size: int = 224  # input height = width
    num_frames: int = 4  # frames per clip the stored pos_embed table is for
    clip_embed_dim: int = 768  # output width of clip_projector.cross_attn.proj
    clip_num_heads: int = 16  # heads of the attention-pooling block
    gelu: Literal["exact", "tanh"] = "tanh"  # training: fused tanh-approx GELU; reference non-fused: exact
    layerscale_init: float = 1e-5  # LayerScale gamma at random init only
    norm_eps: float = 1e-6  # RMSNorm eps of the blocks

    @property
    def grid(self) -> int:
        """Patches along one side of a frame."""
        return self.img_size // self.patch_size

    @property
    def patches_per_frame(self) -> int:
        return self.grid * self.grid


VISION_CONFIGS: dict[str, VisionConfig] = {
    # pretrain_internvideo2_1b_patch14_224 (stage 2, 224 px, 4 frames); gelu "tanh" = the fused MLP the
    # weights were trained with; "exact" reproduces the reference non-fused path (demo config).
    "1b": VisionConfig(embed_dim=1408, depth=40, num_heads=16, mlp_hidden=6144, patch_size=14, img_size=224,
                       num_frames=4, clip_embed_dim=768, clip_num_heads=16, gelu="tanh", layerscale_init=1e-5),
    # Same architecture at a size that runs in milliseconds on CPU (seeded random weights for the demo):
    # 8x8 patches per frame, 1 + 4*64 = 257 tokens. LayerScale 1.0 so that a random network is not ~identity.
    "tiny": VisionConfig(embed_dim=128, depth=4, num_heads=4, mlp_hidden=512, patch_size=28, img_size=224,
                         num_frames=4, clip_embed_dim=128, clip_num_heads=4, gelu="tanh", layerscale_init=1.0),
}


@dataclass(frozen=True)
class TextConfig:
    hidden: int  # D
    text_layers: int  # layers without cross-attention (the ones this encoder runs)
    total_layers: int  # layers stored in the checkpoint (text + cross-attention fusion layers)
    heads: int
    intermediate: int
    vocab: int = 30522  # uncased WordPiece
    max_positions: int = 512
    eps: float = 1e-12  # post-LN epsilon
    act: str = "gelu"  # exact GELU

    def bert_config(self):
        """The transformers.BertConfig of these sizes (imports transformers)."""
        from transformers import BertConfig

        return BertConfig(
            vocab_size=self.vocab, hidden_size=self.hidden, num_hidden_layers=self.text_layers,
            num_attention_heads=self.heads, intermediate_size=self.intermediate, hidden_act=self.act,
            max_position_embeddings=self.max_positions, layer_norm_eps=self.eps, type_vocab_size=2,
            pad_token_id=0,
        )


def _minilm_config() -> TextConfig:
    raw = json.loads((minilm_dir() / "config.json").read_text())
    return TextConfig(hidden=raw["hidden_size"], text_layers=raw["num_hidden_layers"],
                      total_layers=raw["num_hidden_layers"], heads=raw["num_attention_heads"],
                      intermediate=raw["intermediate_size"], vocab=raw["vocab_size"],
                      max_positions=raw["max_position_embeddings"], eps=raw["layer_norm_eps"],
                      act=raw["hidden_act"])


TEXT_CONFIGS: dict[str, TextConfig] = {
    # bert-large-uncased as InternVideo2-1B stage 2 uses it: fusion_layer = 19, so layers 1..19 are
    # text-only and 20..24 carry cross-attention to the video tokens (not run here).
    "bert-large-19": TextConfig(hidden=1024, text_layers=19, total_layers=24, heads=16, intermediate=4096),
    # sentence-transformers/all-MiniLM-L6-v2, numbers read from the package's model/config.json.
    "minilm-l6": _minilm_config(),
}
