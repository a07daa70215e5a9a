"""Training objective of the dense detectors (ActionFormer family, R2-Tuning; sdst/model/dense.py): ActionFormer's
label assignment (centre sampling within each level's regression range), sigmoid focal classification, DIoU and L1
regression on the positive points, and the saliency / alignment terms SDST uses too (sdst/losses.py). No
Hungarian matching. The registry (sdst.model.configs.ARCHS) names :class:`DenseCriterion` for those archs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from sdst.config import LossConfig, check_set_loss_options
from sdst.losses import float32_loss, layer_wise_nce, sample_positive_clips, sampled_nce, sigmoid_focal, video_level_nce
from sdst.model.spans import span_cw_to_se

CENTER_RADIUS = 1.5  # centre sampling radius in strides (ActionFormer train_cfg.center_sample_radius; R2-Tuning)


@torch.no_grad()
def assign_points(points: torch.Tensor, gt: torch.Tensor, radius: float = CENTER_RADIUS):
    """ActionFormer's label assignment (meta_archs.label_points_single_video) for one video.

    points (N, 4) (position, low, high, stride); gt (G, 2) moments as (start, end) in clip units.
    A point is a candidate for a moment if it lies inside the moment's centre region (centre ± radius·stride,
    cut to the moment) and the larger of its two distances to the moment's ends lies in the level's
    regression range; among several candidates the shortest moment wins.
    Returns cls (N,) in {0, 1}, reg (N, 2) target distances / stride, index (N,) of the moment (-1: none).
    """
    n = points.shape[0]
    if gt.numel() == 0:
        return points.new_zeros(n), points.new_zeros(n, 2), torch.full((n,), -1, dtype=torch.long,
                                                                         device=points.device)
    pos, lo, hi, stride = (points[:, i, None] for i in range(4))
    left, right = pos - gt[None, :, 0], gt[None, :, 1] - pos  # (N, G)
    centre = (gt[:, 0] + gt[:, 1])[None] / 2
    inside = torch.minimum(pos - torch.maximum(centre - radius * stride, gt[None, :, 0]),
                           torch.minimum(centre + radius * stride, gt[None, :, 1]) - pos) > 0
    far = torch.maximum(left, right)
    in_range = (far >= lo) & (far <= hi)
    lens = (gt[:, 1] - gt[:, 0])[None].expand(n, -1).masked_fill(~(inside & in_range), math.inf)
    best, idx = lens.min(1)
    cls = torch.isfinite(best).to(points.dtype)
    rows = torch.arange(n, device=points.device)
    reg = torch.stack([left[rows, idx], right[rows, idx]], -1) / stride
    return cls, reg * cls[:, None], torch.where(cls > 0, idx, torch.full_like(idx, -1))


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Distance-IoU loss of segments given as non-negative distances (left, right) from a shared point
    (ActionFormer ctr_diou_loss_1d): 1 - IoU + (centre distance / enclosing length)^2. (M, 2) -> (M,)."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * ((rp - lp) - (rg - lg))
    return 1.0 - iou + (rho / enclosing.clamp(min=eps)) ** 2


class DenseCriterion(nn.Module):
    """Loss of the dense detectors, from sdst.config.LossConfig (float32; no Hungarian matching, so no matcher):

    * ``cls``: sigmoid focal loss (focal_alpha, focal_gamma) over every valid point, summed and divided by
      the number of positive points of the batch (ActionFormer; [decided] the batch count rather than
      ActionFormer's running average, so the criterion is stateless and an exact resume stays exact);
    * ``iou``: DIoU loss on the positive points' decoded segments (ActionFormer), / positives;
    * ``l1``: L1 on (centre, width) in [0, 1] of the positive points' spans (SDST Eq. 18), / positives;
    * ``sal``: SampledNCE ranking of the saliency (R2-Tuning; SDST §C.1);
    * ``align_video`` / ``align_layer``: R2-Tuning's contrastive alignment, when the model outputs
      ``align_video`` (K, B, T, F) and ``align_text`` (K, B, F).
    Returns every weighted term and ``loss``, their sum.
    """

    def __init__(self, cfg: LossConfig | None = None, matcher=None):  # matcher: unused (label assignment)
        super().__init__()
        self.cfg = cfg or LossConfig()
        check_set_loss_options(self.cfg.cls_norm, "dense", "the dense detectors' criterion")

    def targets(self, out: dict, spans: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cls (B, N), reg (B, N, 2) (distances / stride), matched moment (B, N, 2) cw in [0, 1]."""
        points, lengths = out["points"], out["lengths"]
        cls, reg, gt_cw = [], [], []
        for i, t in enumerate(spans):
            t = t.to(points)
            n = lengths[i].to(points.dtype)
            c, r, idx = assign_points(points, span_cw_to_se(t) * n)
            cls.append(c)
            reg.append(r)
            gt_cw.append(t[idx.clamp(min=0)] if len(t) else points.new_zeros(len(points), 2))
        return torch.stack(cls), torch.stack(reg), torch.stack(gt_cw)

    @float32_loss
    def forward(self, out: dict, batch: dict) -> dict:
        c = self.cfg
        cls_t, reg_t, gt_cw = self.targets(out, batch["spans"])
        valid = out["point_mask"]
        pos = (cls_t > 0) & valid
        n_pos = pos.sum().clamp(min=1).float()
        logits = out["pred_logits"].float()
        raw = {"cls": sigmoid_focal(logits[valid], cls_t[valid], c.focal_alpha, c.focal_gamma).sum() / n_pos}
        if pos.any():
            raw["iou"] = diou_loss_1d(out["pred_offsets"][pos].float(), reg_t[pos]).sum() / n_pos
            raw["l1"] = (out["pred_spans"][pos].float() - gt_cw[pos]).abs().sum(-1).sum() / n_pos
        else:
            raw["iou"] = raw["l1"] = out["pred_offsets"].sum() * 0.0
        mask, sal = batch["video_mask"], batch["saliency"]
        spos, has = sample_positive_clips(sal, mask)
        raw["sal"] = sampled_nce(out["saliency"].float(), sal, mask, spos, has, c.temperature)
        if "align_video" in out:
            V, tp = out["align_video"].float(), out["align_text"].float()
            raw["align_video"] = torch.stack(
                [video_level_nce(V[k], tp[k], mask, spos, has, c.temperature) for k in range(V.shape[0])]).mean()
            raw["align_layer"] = layer_wise_nce(V, tp, spos, has, c.temperature)
        weight = {"cls": c.cls, "iou": c.iou, "l1": c.l1, "sal": c.sal, "align_video": c.align_video,
                  "align_layer": c.align_layer}
        losses = {k: v * weight[k] for k, v in raw.items()}
        losses["loss"] = sum(losses.values())
        return losses
