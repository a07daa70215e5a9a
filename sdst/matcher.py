"""Hungarian matching of predicted spans to ground-truth windows, per level (§C.2).

Cost [decided, TadTR / Deformable DETR]: focal-style classification cost + L1 on (centre, width) +
(1 - IoU), with the matcher's own weights (sdst.config.MatcherConfig, ``train.matcher``; DETR's set_cost_*
apart from its loss coefficients), so a loss ablation with λ = 0 (Tab. E) keeps the matching. Costs are
computed in float32 whatever the model's autocast dtype. The assignment is scipy's linear_sum_assignment on
the CPU, one sample at a time; the cost matrices are computed for the whole batch at once.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from sdst.config import MatcherConfig
from sdst.model.spans import span_cw_to_se, temporal_iou


def cost_matrix(logits: torch.Tensor, spans: torch.Tensor, targets: torch.Tensor,
                cost: MatcherConfig) -> torch.Tensor:
    """logits (B, M), spans (B, M, 2) cw, targets (B, G, 2) cw (padded) -> (B, M, G)."""
    p = logits.sigmoid()
    neg = (1 - cost.alpha) * p.pow(cost.gamma) * -(1 - p + 1e-8).log()
    pos = cost.alpha * (1 - p).pow(cost.gamma) * -(p + 1e-8).log()
    c_cls = (pos - neg).unsqueeze(-1)  # (B, M, 1): same for every ground truth (one class)
    c_l1 = torch.cdist(spans, targets, p=1)
    c_iou = 1 - temporal_iou(span_cw_to_se(spans), span_cw_to_se(targets))
    return cost.cls * c_cls + cost.l1 * c_l1 + cost.iou * c_iou


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, spans: torch.Tensor, targets: list[torch.Tensor],
                    cost: MatcherConfig | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (pred_idx, target_idx) pair of int64 tensors per sample; empty for a sample without targets."""
    cost = cost or MatcherConfig()
    b = logits.shape[0]
    sizes = [len(t) for t in targets]
    g = max(sizes, default=0)
    out = []
    if g == 0:
        empty = torch.empty(0, dtype=torch.int64)
        return [(empty, empty) for _ in range(b)]
    padded = spans.new_zeros(b, g, 2, dtype=torch.float32)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = t
    with torch.autocast(spans.device.type, enabled=False):  # float32 costs even inside an autocast region
        c = cost_matrix(logits.float(), spans.float(), padded, cost).cpu()
    for i, n in enumerate(sizes):
        if n == 0:
            out.append((torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)))
            continue
        rows, cols = linear_sum_assignment(c[i, :, :n].numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out
