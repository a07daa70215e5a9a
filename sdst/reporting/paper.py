"""The SDST paper's reported numbers (Pujol-Perich, Escalera, Clapés, ICCV 2025), shown beside a run's on the
results pages (sdst.reporting.summary), labelled as the paper's and with both model-selection protocols named.

Tab. 1: QVHighlights val and test (SDST with InternVideo2 features); Tab. 2: Charades-STA and TACoS test. The
keys are this project's metric names (sdst.evaluate).
"""

from __future__ import annotations

QVH = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-full-mAP", "HL-min-VeryGood-mAP",
       "HL-min-VeryGood-Hit1")
MR = ("MR-R1@0.5", "MR-R1@0.7", "MR-mIoU")

REPORTED = {  # dataset -> split -> (table, {metric: value})
    "qvh": {"val": ("Tab. 1", dict(zip(QVH, (73.68, 60.90, 73.52, 57.42, 55.60, 44.00, 72.00)))),
            "test": ("Tab. 1", dict(zip(QVH, (70.82, 56.23, 71.31, 54.99, 53.31, 43.40, 69.13))))},
    "charades": {"test": ("Tab. 2", dict(zip(MR, (72.0, 52.6, 61.2))))},
    "tacos": {"test": ("Tab. 2", dict(zip(MR, (44.5, 32.3, 42.2))))},
}

# The paper does not say how its checkpoints were chosen. The code it builds on (the moment_detr family: QD-DETR,
# CG-DETR, lighthouse) evaluates the file given as its evaluation split after every epoch and keeps the best
# epoch there, and QVHighlights' reported val is that split (docs/evaluation.md, "Splits and model selection").
PAPER_PROTOCOL = ("not stated in the paper; the moment_detr-family code it builds on keeps the epoch that scores best "
                  "on its evaluation split (QVHighlights: val, the split reported beside test)")


def run_protocol(splits: dict) -> str:
    """How a run chose its checkpoint, in words, from its dataset's ``splits`` (config.yaml)."""
    select = splits["select"]
    if isinstance(select, dict):
        return (f"the best epoch on {select['holdout']:.0%} of the training videos held out (never a reported split: "
                "honest, and lower than selecting on the reported split by construction)")
    if select in splits.get("report", []):
        return f"the best epoch on {select}, a reported split (the paper's protocol: optimistic)"
    return f"the best epoch on {select} (not a reported split)"


def difference(mean: float | None, std: float | None, paper: float) -> str:
    """Run mean minus the paper's value, with the gap in the run's standard deviations when it has one."""
    if mean is None:
        return "–"
    diff = mean - paper
    return f"{diff:+.2f}" + (f" ({abs(diff) / std:.1f} std)" if std else "")
