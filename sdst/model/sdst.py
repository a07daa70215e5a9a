"""SDST: the Sparse-Dense Side-Tuner (§3.3-3.4, Eqs. 1-6 and 16; docs/method.md).

For each level ℓ = 1..K (Eq. 1) one SDST layer — the same weights at every level unless
``share_weights`` is off (Tab. J) — refines
  * the dense stream D (B, T, F): D := β D + (1 - β) V (Eq. 3), then FFN(SA(CA(D, T, T))) (Eq. 4);
  * the sparse stream, M recurrent decoder queries: references R (B, M, 2) and latents H (B, M, F):
    H = SA(CA(H, T, T)) (Eq. 5), H = FFN(RDSA(R, H, D^{ℓ+1})) (Eq. 6), then R is refined by the
    regression head, R^{ℓ+1} = sigmoid(inverse_sigmoid(R^ℓ) + Δ) [decided, DAB-DETR/TadTR].
Heads (§3.4, §A, §C): classification (1-layer), regression (3-layer), actionness (1-D RoIAlign, 16 bins,
3-layer MLP, final level), saliency = cos(D^K, T^pool) (Eq. 16).

Output dict: ``pred_logits`` (B, M), ``pred_spans`` (B, M, 2) (centre, width) in [0, 1] of the valid
length, ``pred_actionness`` (B, M) in [0, 1], ``saliency`` (B, T), ``aux_outputs`` (list of
{pred_logits, pred_spans} for levels 1..K-1), ``align_video`` (K, B, T, F) the projected videos V^ℓ,
``align_text`` (K, B, F) the pooled texts T^pool_ℓ, ``offsets`` (list of (B, M, heads, points) or None).
"""

from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from sdst.model.layers import (MLP, AttentionBlock, FFNBlock, InputNorm, InputProjection, TextPool, inverse_sigmoid,
                               roi_align_1d, span_encoding, temporal_encoding)
from sdst.model.configs import SDSTConfig
from sdst.model.sparse_attention import SPARSE_ATTENTION


SPARSE_MODULES = ("ca", "sa", "deform", "ffn")
CONDITIONS = ("raw", "ca", "sa", "ffn")
QUERY_INITS = ("learned", "mixed", "pure")


class DenseStream(nn.Module):
    """Eq. 4: D^{ℓ+1} = PFFN(SA(CA(D^ℓ, T^ℓ, T^ℓ))), keeping each intermediate for the conditioning (Tab. 6)."""

    def __init__(self, cfg: SDSTConfig):
        super().__init__()
        f, h, dp = cfg.hidden_dim, cfg.heads, cfg.droppath
        self.ca = AttentionBlock(f, h, cfg.attn_dropout, dp)
        self.sa = AttentionBlock(f, h, cfg.attn_dropout, dp)
        self.ffn = FFNBlock(f, cfg.ffn_ratio, dp)

    def forward(self, D, d_mask, T, t_mask, pe):
        states = {}
        D = states["ca"] = self.ca(D, d_mask, kv=T, kv_mask=t_mask)
        D = states["sa"] = self.sa(D, d_mask, pos_q=pe, pos_k=pe)
        D = states["ffn"] = self.ffn(D)
        return D * d_mask.unsqueeze(-1).to(D.dtype), states


class SparseStream(nn.Module):
    """Eqs. 5-6 in the configured module order: CA (text), SA (between queries), deform (video), FFN."""

    def __init__(self, cfg: SDSTConfig):
        super().__init__()
        f, h, dp = cfg.hidden_dim, cfg.heads, cfg.droppath
        unknown = [m for m in cfg.sparse_order if m not in SPARSE_MODULES]
        if unknown or len(set(cfg.sparse_order)) != len(cfg.sparse_order):
            raise ValueError(f"sparse_order must list distinct modules of {SPARSE_MODULES}, got {cfg.sparse_order}")
        if cfg.sparse_attention not in SPARSE_ATTENTION:
            raise ValueError(f"sparse_attention must be one of {sorted(SPARSE_ATTENTION)}, got {cfg.sparse_attention!r}")
        self.order = list(cfg.sparse_order)
        self.blocks = nn.ModuleDict()
        if "ca" in self.order:
            self.blocks["ca"] = AttentionBlock(f, h, cfg.attn_dropout, dp)
        if "sa" in self.order:
            self.blocks["sa"] = AttentionBlock(f, h, cfg.attn_dropout, dp)
        if "deform" in self.order:
            self.blocks["deform"] = SPARSE_ATTENTION[cfg.sparse_attention](
                f, heads=cfg.deform_heads, points=cfg.deform_points, query_dim=cfg.deform_query_dim, droppath=dp,
                sampling_points=cfg.sampling_points, context_cnn=cfg.context_cnn)
        if "ffn" in self.order:
            self.blocks["ffn"] = FFNBlock(f, cfg.ffn_ratio, dp)

    def forward(self, H, R, query_pos, T, t_mask, cond, d_mask, lengths):
        info = {}
        for name in self.order:
            block = self.blocks[name]
            if name == "ca":
                H = block(H, kv=T, kv_mask=t_mask, pos_q=query_pos)
            elif name == "sa":
                H = block(H, pos_q=query_pos, pos_k=query_pos)
            elif name == "deform":
                H, info = block(H, R, cond, d_mask, lengths, query_pos=query_pos)
            else:
                H = block(H)
        return H, info


class SDSTLayer(nn.Module):
    def __init__(self, cfg: SDSTConfig):
        super().__init__()
        self.dense = DenseStream(cfg)
        self.sparse = SparseStream(cfg)


class SDST(nn.Module):
    def __init__(self, cfg: SDSTConfig, video_dim: int, text_dim: int, cache_layers: int | None = None):
        super().__init__()
        if cfg.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {cfg.condition!r}")
        if cfg.query_init not in QUERY_INITS:
            raise ValueError(f"query_init must be one of {QUERY_INITS}, got {cfg.query_init!r}")
        self.cfg = cfg
        self.levels = list(cfg.levels)
        self.text_levels = list(cfg.text_levels) if cfg.text_levels is not None else list(cfg.levels)
        if len(self.text_levels) != len(self.levels):
            raise ValueError(f"text_levels {self.text_levels} must have one entry per level {self.levels}")
        if cache_layers is not None:
            for lvl in self.levels + self.text_levels:
                if not -cache_layers <= lvl < cache_layers:
                    raise ValueError(f"level {lvl} is not among the {cache_layers} cached layers")
        f, m, k = cfg.hidden_dim, cfg.num_queries, len(self.levels)
        n_cache = cache_layers or max(max(self.levels), max(self.text_levels), -min(self.levels + self.text_levels) - 1) + 1
        standardise = cfg.input_norm == "standardise"
        self.video_norm = InputNorm(n_cache, video_dim, standardise)  # training-set statistics, set by the trainer
        self.text_norm = InputNorm(n_cache, text_dim, standardise)
        self.video_proj = InputProjection(video_dim, f, cfg.input_dropout)  # F_v (Eq. 2), shared
        self.text_proj = InputProjection(text_dim, f, cfg.input_dropout)  # F_t (Eq. 2), shared
        self.text_pool = TextPool(f)
        # β^ℓ ∈ [0, 1], zero-initialised (Eq. 3; cfg.beta_init tries others): kept in [0, 1] by projection after
        # every optimizer step (project_parameters), not by a clamp in the forward pass, whose gradient is exactly
        # zero below 0 so that a β an update pushed under 0 could never come back
        self.beta = nn.Parameter(torch.full((k,), float(cfg.beta_init)))
        self.register_load_state_dict_post_hook(lambda module, _: module.project_parameters())
        self.layers = nn.ModuleList([SDSTLayer(cfg) for _ in range(1 if cfg.share_weights else k)])
        self.query_pos = MLP([f, f, f])  # DAB-DETR: positional query from the reference's sinusoids
        self.h0 = nn.Parameter(torch.zeros(m, f))  # H^0, learnable
        nn.init.normal_(self.h0, std=0.02)
        centres = (torch.arange(m) + 0.5) / m
        widths = torch.tensor([0.1, 0.25, 0.5])[torch.arange(m) % 3]
        self.r0 = nn.Parameter(inverse_sigmoid(torch.stack([centres, widths], -1)))  # R^0 (logits), learnable
        self.cls_head = MLP([f] * cfg.cls_layers + [1])
        self.reg_head = MLP([f] * cfg.reg_layers + [2])
        self.act_head = MLP([cfg.roi_bins * f] + [cfg.act_hidden] * (cfg.act_layers - 1) + [1])
        prior = 0.01  # focal-loss prior for the classification bias (Lin et al.)
        nn.init.constant_(self.cls_head.net[-1].bias, -math.log((1 - prior) / prior))
        nn.init.zeros_(self.reg_head.net[-1].weight)  # start at the references [decided, DAB-DETR]
        nn.init.zeros_(self.reg_head.net[-1].bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @torch.no_grad()
    def project_parameters(self) -> None:
        """Project constrained parameters onto their sets: β^ℓ onto [0, 1] (Eq. 3). The training loop calls it
        after every optimizer step (projected gradient descent); loading a state dict calls it too, so a
        checkpoint written when the forward pass clamped β behaves as it did then."""
        self.beta.clamp_(0.0, 1.0)

    def _select_queries(self, cond, tpool, d_mask, lengths, H, R):
        """DINO-style query selection (Tab. 5): references at the M most query-like clips ("mixed"),
        latents also taken from those clips ("pure"). Clips beyond a short video keep the learned queries."""
        m = H.shape[1]
        scores = F.cosine_similarity(cond, tpool.unsqueeze(1), dim=-1).masked_fill(~d_mask, float("-inf"))
        k = min(m, scores.shape[1])
        top, idx = scores.topk(k, dim=1)
        ok = torch.isfinite(top)
        centre = (idx.to(cond.dtype) + 0.5) / lengths.to(cond.dtype).clamp(min=1).unsqueeze(1)
        R = R.clone()
        R[:, :k, 0] = torch.where(ok, centre, R[:, :k, 0])
        if self.cfg.query_init == "pure":
            picked = torch.gather(cond, 1, idx.unsqueeze(-1).expand(-1, -1, cond.shape[-1]))
            H = H.clone()
            H[:, :k] = torch.where(ok.unsqueeze(-1), picked, H[:, :k])
        return H, R

    def forward(self, video, video_mask, text, text_mask):
        """video (B, K_cache, T, Fv), video_mask (B, T); text (B, K_cache, L, Ft), text_mask (B, L)."""
        b, _, t, _ = video.shape
        cfg = self.cfg
        video, text = self.video_norm(video), self.text_norm(text)
        lengths = video_mask.sum(1)
        ca_mask = text_mask.clone()
        ca_mask[:, 0] = False  # the cross-attentions exclude the CLS token (§3.3.2)
        pe = temporal_encoding(t, cfg.hidden_dim, video.device).to(video.dtype).unsqueeze(0)
        D = video.new_zeros(b, t, cfg.hidden_dim)  # D^0 = 0 (§3.3.1)
        H = self.h0.unsqueeze(0).expand(b, -1, -1)
        R = self.r0.sigmoid().unsqueeze(0).expand(b, -1, -1)
        levels, align_v, align_t, offsets = [], [], [], []
        for step, (lv, lt) in enumerate(zip(self.levels, self.text_levels)):
            layer = self.layers[0 if cfg.share_weights else step]
            V = self.video_proj(video[:, lv]) * video_mask.unsqueeze(-1).to(video.dtype)
            T = self.text_proj(text[:, lt])
            tpool = self.text_pool(T, text_mask)
            beta = self.beta[step]  # in [0, 1] by projection (project_parameters), so the gradient never dies
            D = beta * D + (1 - beta) * V  # Eq. 3
            D, states = layer.dense(D, video_mask, T, ca_mask, pe)  # Eq. 4
            cond = V if cfg.condition == "raw" else states[cfg.condition]  # Tab. 6
            if step == 0 and cfg.query_init != "learned":
                H, R = self._select_queries(cond, tpool, video_mask, lengths, H, R)
            query_pos = self.query_pos(span_encoding(R, cfg.hidden_dim))
            H, info = layer.sparse(H, R, query_pos, T, ca_mask, cond, video_mask, lengths)  # Eqs. 5-6
            logits = self.cls_head(H).squeeze(-1)
            spans = (inverse_sigmoid(R) + self.reg_head(H)).sigmoid()
            levels.append({"pred_logits": logits, "pred_spans": spans})
            R = spans.detach() if cfg.detach_references else spans
            align_v.append(V)
            align_t.append(tpool)
            offsets.append(info.get("offsets"))
        # saliency: cosine similarity of the final dense embedding with the pooled text (Eq. 16)
        saliency = F.cosine_similarity(D, align_t[-1].unsqueeze(1), dim=-1).masked_fill(~video_mask, 0.0)
        final = levels[-1]
        roi = roi_align_1d(D, final["pred_spans"].detach(), lengths, cfg.roi_bins)  # (B, M, bins, F)
        actionness = self.act_head(roi.flatten(2)).squeeze(-1).sigmoid()
        return {
            "pred_logits": final["pred_logits"], "pred_spans": final["pred_spans"], "pred_actionness": actionness,
            "saliency": saliency, "aux_outputs": levels[:-1], "align_video": torch.stack(align_v),
            "align_text": torch.stack(align_t), "offsets": offsets,
        }
