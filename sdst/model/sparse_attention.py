"""How the recurrent decoder queries read the video (§3.3.4, Tab. 5): RDSA and its two alternatives.

All three share one interface, ``forward(H, R, D, d_mask, lengths, query_pos) -> (H, info)``: H (B, M, F)
latents, R (B, M, 2) references (centre, width) in [0, 1], D (B, T, F) the conditioning dense embedding with
its mask and valid lengths, query_pos (B, M, F) the queries' positional embedding (an MLP of the references'
sinusoids, DAB-DETR). The result is post-norm residual: ``LN(H + DropPath(out))`` (§A).

* ``rdsa`` — Reference-based Deformable Self-Attention (Eqs. 10-11): a context CNN over D, the CNN output
  sampled at the reference's left edge, centre and right edge (Tab. M: which points, CNN on/off), an MLP to
  a 64-d query Q̂, offsets Δ = G_Δ(Q̂) and weights A = softmax(G_A(Q̂)); values of D sampled at
  c + (w/2)·Δ so that Δ = -1 / +1 are the current left / right edges (Eq. 9, Fig. 4).
* ``deformable_ca`` — the standard deformable cross-attention (Eq. 8) as Deformable-DETR's decoder runs it
  (models/deformable_transformer.py DeformableTransformerDecoderLayer, ops/modules/ms_deform_attn.py): the
  query is ``H + query_pos``, offsets and weights are linear maps of it, values are D without positions.
* ``standard_ca`` — multi-head cross-attention from H to D as DETR's decoder runs it (models/transformer.py
  TransformerDecoderLayer): query ``H + query_pos``, key ``D + pos`` with ``pos`` the sine encoding of the
  clips' normalised positions (models/position_encoding.py, normalize=True), value D.
RDSA reads positions through where it samples (its query comes from D at the reference's l, c, r), so it
takes no positional embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sdst.model.layers import AttentionBlock, DropPath, MLP, sample_1d, sinusoidal

# Initial offset centres per head [decided, TadTR-style]: head 0 near the left edge, head 1 near the right
# edge (Fig. 4), head 2 at the centre (Fig. A); the rest spread over [-1, 1].
HEAD_CENTRES = (-1.0, 1.0, 0.0, -0.5, 0.5, -0.75, 0.75, -0.25)
SAMPLING_POINTS = {"c": (0.0,), "lr": (-1.0, 1.0), "lcr": (-1.0, 0.0, 1.0)}  # in half-widths (Tab. M)


class ContextCNN(nn.Module):
    """2 layers of 1-D conv (hidden 256, kernel 3 [decided]) each followed by LayerNorm and ReLU (§A)."""

    def __init__(self, dim: int, kernel: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv((x * m).transpose(1, 2)).transpose(1, 2)))
        return x * m


class _DeformableBase(nn.Module):
    """Shared half of RDSA and deformable CA: offsets/weights from a 64-d query, sampling, output."""

    def __init__(self, dim: int, heads: int = 8, points: int = 4, query_dim: int = 64, droppath: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden dim {dim} is not divisible by {heads} deformable heads")
        self.heads, self.points = heads, points
        self.offsets = nn.Linear(query_dim, heads * points)  # G_Δ
        self.weights = nn.Linear(query_dim, heads * points)  # G_A
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = DropPath(droppath)
        self._reset()

    def _reset(self) -> None:
        # [decided, TadTR]: offsets start at fixed per-head positions, attention weights uniform
        nn.init.zeros_(self.offsets.weight)
        centres = torch.tensor([HEAD_CENTRES[h % len(HEAD_CENTRES)] for h in range(self.heads)])
        spread = torch.linspace(-0.1, 0.1, self.points) if self.points > 1 else torch.zeros(1)
        with torch.no_grad():
            self.offsets.bias.copy_((centres[:, None] + spread[None, :]).reshape(-1))
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        nn.init.xavier_uniform_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def attend(self, H, q_hat, R, D, lengths):
        """Eq. 9 with per-head values: S = Σ_p A_p · V[c + (w/2)·Δ_p]. Returns (H, info) with the offsets Δ,
        the weights A and the sampled positions, each (B, M, heads, points)."""
        b, m, _ = H.shape
        offsets = self.offsets(q_hat).view(b, m, self.heads, self.points)
        weights = self.weights(q_hat).view(b, m, self.heads, self.points).softmax(-1)
        pos = R[..., 0, None, None] + R[..., 1, None, None] / 2 * offsets  # (B, M, heads, points)
        value = self.value(D)  # (B, T, F)
        hd = value.shape[-1] // self.heads
        # sample every head's channels at that head's positions: fold heads into the batch
        v = value.view(b, -1, self.heads, hd).permute(0, 2, 1, 3).reshape(b * self.heads, -1, hd)
        p = pos.permute(0, 2, 1, 3).reshape(b * self.heads, m * self.points)
        sampled = sample_1d(v, p, lengths.repeat_interleave(self.heads))  # (B*heads, M*points, hd)
        sampled = sampled.view(b, self.heads, m, self.points, hd)
        out = (sampled * weights.permute(0, 2, 1, 3).unsqueeze(-1)).sum(3)  # (B, heads, M, hd)
        out = self.out(out.permute(0, 2, 1, 3).reshape(b, m, -1))
        return self.norm(H + self.drop(out)), {"offsets": offsets, "weights": weights, "positions": pos}


class RDSA(_DeformableBase):
    """Reference-based Deformable Self-Attention (Eqs. 10-11)."""

    def __init__(self, dim: int, heads: int = 8, points: int = 4, query_dim: int = 64, droppath: float = 0.0,
                 sampling_points: str = "lcr", context_cnn: bool = True):
        super().__init__(dim, heads, points, query_dim, droppath)
        if sampling_points not in SAMPLING_POINTS:
            raise ValueError(f"sampling_points must be one of {sorted(SAMPLING_POINTS)}, got {sampling_points!r}")
        self.anchor = SAMPLING_POINTS[sampling_points]
        self.cnn = ContextCNN(dim) if context_cnn else None
        n = len(self.anchor)
        self.query = MLP([n * dim, dim, query_dim])  # W_Q^def applied to X̂_Q (Eq. 10)

    def forward(self, H, R, D, d_mask, lengths, query_pos=None):
        ctx = self.cnn(D, d_mask) if self.cnn is not None else D
        b, m, _ = R.shape
        pos = torch.stack([R[..., 0] + a * R[..., 1] / 2 for a in self.anchor], dim=-1)  # (B, M, n)
        x_q = sample_1d(ctx, pos.reshape(b, -1), lengths).reshape(b, m, -1)  # (B, M, n*F)
        H, info = self.attend(H, self.query(x_q), R, D, lengths)
        info["query_positions"] = pos
        return H, info


class DeformableCA(_DeformableBase):
    """Deformable cross-attention (Eq. 8, Tab. 5 "Def. CA"): offsets and weights predicted from the query
    ``H + query_pos`` (Deformable-DETR DeformableTransformerDecoderLayer: ``cross_attn(with_pos_embed(tgt,
    query_pos), reference_points, src, ...)``; MSDeformAttn maps that query to sampling_offsets and
    attention_weights); the values are D's projection, without positions (MSDeformAttn value_proj(input_flatten))."""

    def __init__(self, dim: int, heads: int = 8, points: int = 4, query_dim: int = 64, droppath: float = 0.0,
                 **_):
        super().__init__(dim, heads, points, query_dim, droppath)
        self.query = MLP([dim, dim, query_dim])  # W_Q^def (Eq. 7), as deep as RDSA's so Tab. 5 compares queries

    def forward(self, H, R, D, d_mask, lengths, query_pos=None):
        q = H if query_pos is None else H + query_pos  # Deformable-DETR with_pos_embed(tgt, query_pos)
        return self.attend(H, self.query(q), R, D, lengths)


def clip_position_encoding(lengths: torch.Tensor, t: int, dim: int) -> torch.Tensor:
    """(B, T, dim) sine encoding of each clip's centre normalised by its video's valid length, times 2π: DETR's
    PositionEmbeddingSine(normalize=True) in 1-D, with Deformable-DETR's half-cell offset ((i + 0.5) / n · 2π,
    models/position_encoding.py), so a clip and a reference centre share the [0, 1] coordinates of R."""
    n = lengths.to(torch.float32).clamp(min=1).unsqueeze(1)
    centres = (torch.arange(t, device=lengths.device, dtype=torch.float32) + 0.5) / n  # (B, T)
    return sinusoidal(centres * 2 * math.pi, dim)


class StandardCA(nn.Module):
    """Multi-head cross-attention from the latents to every clip of D (Tab. 5, "Stand. CA"), as DETR's decoder
    (models/transformer.py TransformerDecoderLayer.forward_post): query = H + query_pos, key = D + pos with the
    clips' sine position encoding, value = D. Without positions the attention could not tell clips apart by
    where they are: it is invariant to a permutation of the clips."""

    def __init__(self, dim: int, heads: int = 8, droppath: float = 0.0, **_):
        super().__init__()
        self.block = AttentionBlock(dim, heads, droppath=droppath)

    def forward(self, H, R, D, d_mask, lengths, query_pos=None):
        pos = clip_position_encoding(lengths, D.shape[1], D.shape[-1]).to(D.dtype)
        return self.block(H, kv=D, kv_mask=d_mask, pos_q=query_pos, pos_k=pos), {}


SPARSE_ATTENTION = {"rdsa": RDSA, "deformable_ca": DeformableCA, "standard_ca": StandardCA}
