"""SDST's training objective (§3.4, §C): L = λ_HD L_HD + L_MR + L_align (Eq. 14, weights of Tab. G).

* L_MR (Eq. 13): per level, after Hungarian matching — focal classification (Eq. 17), L1 on (centre, width)
  (Eq. 18), 1 - IoU (Eq. 19); plus L1 actionness on the final level (Eq. 20).
* L_HD: SampledNCE ranking of the saliency scores (§C.1) [decided, R2-Tuning]: for each video a positive clip
  is drawn among its salient clips; the softmax runs over the clips that are not more salient than it.
* L_align (§C.3): per level, InfoNCE between the projected video V^ℓ and the pooled text T^pool_ℓ, with
  negatives the same clip of the other videos in the batch (video-level, Eq. 21) and the same clip at the
  other levels (layer-wise, Eq. 22).
Every term is computed in float32 (the model's outputs are cast on entry, autocast is off), also when the
model ran under bf16/fp16 autocast (§A: mixed precision): the focal and log-softmax terms lose too much in
16 bits.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sdst.config import LossConfig, MatcherConfig
from sdst.matcher import hungarian_match
from sdst.model.spans import span_cw_to_se, temporal_iou


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al. 2017)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t).pow(gamma) * ce


def sample_positive_clips(saliency: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One random salient clip per video (torch's global RNG, so a seeded run repeats); and which videos have one."""
    weights = ((saliency > 0) & mask).float()
    has = weights.sum(1) > 0
    weights = torch.where(has.unsqueeze(1), weights, mask.float() + 1e-6)
    return torch.multinomial(weights, 1).squeeze(1), has


def sampled_nce(sim: torch.Tensor, saliency: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, has: torch.Tensor,
                tau: float) -> torch.Tensor:
    """Rank the positive clip above every clip that is less (or equally) salient. sim, saliency, mask (B, T)."""
    if not has.any():
        return sim.sum() * 0.0
    rows = torch.arange(sim.shape[0], device=sim.device)
    pos_sal = saliency[rows, pos].unsqueeze(1)
    allowed = mask & (saliency <= pos_sal)
    logits = (sim / tau).masked_fill(~allowed, float("-inf"))
    nll = -logits.log_softmax(1)[rows, pos]
    return nll[has].mean()


def video_level_nce(V: torch.Tensor, tpool: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, has: torch.Tensor,
                    tau: float) -> torch.Tensor:
    """Eq. 21 at one level: V (B, T, F), tpool (B, F). For query b and its positive clip j, the candidates are
    clip j of every video b' in the batch (those long enough); the positive is b' = b."""
    if not has.any():
        return V.sum() * 0.0
    b = V.shape[0]
    rows = torch.arange(b, device=V.device)
    clips = F.normalize(V[:, pos], dim=-1)  # (B', B, F): clip pos[b] of every video b'
    sim = (clips * F.normalize(tpool, dim=-1).unsqueeze(0)).sum(-1).t()  # (B query, B' video)
    valid = mask[:, pos].t()  # (B, B'): video b' has clip pos[b]
    logits = (sim / tau).masked_fill(~valid, float("-inf"))
    return -logits.log_softmax(1)[rows, rows][has].mean()


def layer_wise_nce(V: torch.Tensor, tpool: torch.Tensor, pos: torch.Tensor, has: torch.Tensor, tau: float):
    """Eq. 22: V (K, B, T, F), tpool (K, B, F). For level ℓ the candidates are the positive clip at every
    level ℓ'; the positive is ℓ' = ℓ. Averaged over levels."""
    k, b = V.shape[:2]
    if k < 2 or not has.any():
        return V.sum() * 0.0
    rows = torch.arange(b, device=V.device)
    clips = F.normalize(V[:, rows, pos], dim=-1)  # (K', B, F)
    sim = torch.einsum("jbf,lbf->lbj", clips, F.normalize(tpool, dim=-1))  # (K level, B, K' candidate)
    nll = -(sim / tau).log_softmax(-1).diagonal(dim1=0, dim2=2)  # (B, K)
    return nll[has].mean()


def float32_outputs(out):
    """The model's output dict (nested lists/dicts too) with every floating tensor cast to float32."""
    if isinstance(out, dict):
        return {k: float32_outputs(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(float32_outputs(v) for v in out)
    return out.float() if torch.is_tensor(out) and out.is_floating_point() else out


def float32_loss(forward):
    """Decorator of a criterion's ``forward(out, batch)``: the outputs cast to float32 and autocast off inside,
    so every loss term (and matching cost) is float32 whatever dtype the model ran in."""

    @functools.wraps(forward)
    def wrapped(self, out: dict, batch: dict) -> dict:
        with torch.autocast(batch["video_mask"].device.type, enabled=False):
            return forward(self, float32_outputs(out), batch)

    return wrapped


class SetCriterion(torch.nn.Module):
    """L of Eq. 14 from the loss weights (``cfg``, Tab. G) and the matching costs (``matcher``, its own weights:
    a λ set to 0 leaves the matching as it was)."""

    def __init__(self, cfg: LossConfig | None = None, matcher: MatcherConfig | None = None):
        super().__init__()
        self.cfg = cfg or LossConfig()
        self.cost = matcher or MatcherConfig()

    def _moment_losses(self, logits, spans, targets, prefix: str) -> dict:
        c = self.cfg
        matches = hungarian_match(logits, spans, targets, self.cost)
        cls_target = torch.zeros_like(logits)
        src, tgt = [], []
        for i, (p, t) in enumerate(matches):
            cls_target[i, p] = 1.0
            src.append(spans[i, p.to(spans.device)])
            tgt.append(targets[i][t.to(spans.device)])
        focal = sigmoid_focal(logits, cls_target, c.focal_alpha, c.focal_gamma)
        if c.cls_norm == "queries":
            cls = focal.mean()  # Eq. 17: 1/M over the queries, then the batch mean
        else:  # DETR / Deformable-DETR: summed over queries and videos, divided by the number of windows
            cls = focal.sum() / max(sum(len(t) for t in targets), 1)
        losses = {f"{prefix}cls": cls}
        src, tgt = torch.cat(src), torch.cat(tgt)
        if len(src):
            losses[f"{prefix}l1"] = (src - tgt).abs().sum(-1).mean()  # Eq. 18
            iou = temporal_iou(span_cw_to_se(src).unsqueeze(1), span_cw_to_se(tgt).unsqueeze(1)).flatten()
            losses[f"{prefix}iou"] = (1 - iou).mean()  # Eq. 19
        else:
            losses[f"{prefix}l1"] = losses[f"{prefix}iou"] = spans.sum() * 0.0
        return losses

    @float32_loss
    def forward(self, out: dict, batch: dict) -> dict:
        """Returns every weighted term and ``loss`` (their sum). batch: spans (list of (G, 2) cw),
        saliency (B, T), video_mask (B, T)."""
        c = self.cfg
        targets = batch["spans"]
        mask = batch["video_mask"]
        raw = self._moment_losses(out["pred_logits"], out["pred_spans"], targets, "")
        if c.aux:
            for i, aux in enumerate(out.get("aux_outputs", [])):
                raw.update(self._moment_losses(aux["pred_logits"], aux["pred_spans"], targets, f"aux{i}_"))
        # actionness (Eq. 20): the max IoU of each final span with any ground truth, all M queries
        with torch.no_grad():
            act_target = torch.zeros_like(out["pred_actionness"])
            for i, t in enumerate(targets):
                if len(t):
                    ious = temporal_iou(span_cw_to_se(out["pred_spans"][i]), span_cw_to_se(t))
                    act_target[i] = ious.max(1).values
        raw["act"] = (out["pred_actionness"] - act_target).abs().mean()
        sal = batch["saliency"]
        pos, has = sample_positive_clips(sal, mask)
        raw["sal"] = sampled_nce(out["saliency"], sal, mask, pos, has, c.temperature)
        if "align_video" in out:
            V, tp = out["align_video"], out["align_text"]
            raw["align_video"] = torch.stack(
                [video_level_nce(V[k], tp[k], mask, pos, has, c.temperature) for k in range(V.shape[0])]).mean()
            raw["align_layer"] = layer_wise_nce(V, tp, pos, has, c.temperature)
        weight = {"cls": c.cls, "l1": c.l1, "iou": c.iou, "act": c.act, "sal": c.sal,
                  "align_video": c.align_video, "align_layer": c.align_layer}
        losses = {k: v * weight[k.split("_", 1)[1] if k.startswith("aux") else k] for k, v in raw.items()}
        losses["loss"] = sum(losses.values())
        return losses
