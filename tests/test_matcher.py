"""Hungarian matching invariants; the matcher's own costs, apart from the loss weights (Tab. E ablations)."""

from __future__ import annotations

import pytest
import torch

from conftest import synthetic_run
from sdst.config import LossConfig, MatcherConfig
from sdst.losses import SetCriterion
from sdst.matcher import cost_matrix, hungarian_match


def test_batched_equals_per_sample():
    torch.manual_seed(0)
    b, m = 5, 8
    logits, spans = torch.randn(b, m), torch.rand(b, m, 2) * 0.5 + 0.1
    targets = [torch.rand(n, 2) * 0.5 + 0.1 for n in (1, 3, 0, 2, 5)]
    batched = hungarian_match(logits, spans, targets)
    for i in range(b):
        (p, t), = hungarian_match(logits[i:i + 1], spans[i:i + 1], targets[i:i + 1])
        assert torch.equal(batched[i][0], p) and torch.equal(batched[i][1], t)
        assert len(p) == len(targets[i]) and len(set(p.tolist())) == len(p)  # one-to-one


def test_no_ground_truth_gives_empty_matches():
    out = hungarian_match(torch.randn(2, 4), torch.rand(2, 4, 2), [torch.zeros(0, 2), torch.zeros(0, 2)])
    assert all(len(p) == 0 and len(t) == 0 for p, t in out)


def test_obvious_assignment_and_cost_terms():
    spans = torch.tensor([[[0.2, 0.1], [0.7, 0.2], [0.5, 0.9]]])
    targets = [torch.tensor([[0.71, 0.2], [0.2, 0.1]])]
    (p, t), = hungarian_match(torch.zeros(1, 3), spans, targets)
    assert dict(zip(t.tolist(), p.tolist())) == {0: 1, 1: 0}
    # identical span, zero logit: class cost + 0 L1 + 0 (1 - IoU)
    c = cost_matrix(torch.zeros(1, 1), torch.tensor([[[0.5, 0.2]]]), torch.tensor([[[0.5, 0.2]]]), MatcherConfig())
    p_ = 0.5
    expected = 0.25 * (1 - p_) ** 2 * -torch.log(torch.tensor(p_)) - 0.75 * p_ ** 2 * -torch.log(torch.tensor(1 - p_))
    torch.testing.assert_close(c[0, 0, 0], expected, atol=1e-6, rtol=1e-5)


def _clear_choice():
    """Prediction 0 sits a little closer to the target but is unlikely (logit -5); prediction 1 a little farther
    but confident (+5): the class cost picks 1, the span costs alone pick 0."""
    logits = torch.tensor([[-5.0, 5.0]])
    spans = torch.tensor([[[0.50, 0.20], [0.53, 0.20]]])
    return logits, spans, [torch.tensor([[0.50, 0.20]])]


def test_matcher_has_its_own_costs():
    logits, spans, targets = _clear_choice()
    (p, _), = hungarian_match(logits, spans, targets)
    assert p.tolist() == [1]
    (p, _), = hungarian_match(logits, spans, targets, MatcherConfig(cls=0.0))
    assert p.tolist() == [0]


@pytest.mark.parametrize("ablation", [{"cls": 0.0}, {"l1": 0.0}, {"iou": 0.0}])
def test_a_loss_weight_of_zero_leaves_the_matching_unchanged(ablation):
    """Tab. E ablates a loss by λ = 0; the matching (and so the other terms) must stay what it was."""
    logits, spans, targets = _clear_choice()
    batch = {"spans": targets, "video_mask": torch.ones(1, 4, dtype=torch.bool), "saliency": torch.ones(1, 4)}
    out = {"pred_logits": logits, "pred_spans": spans, "pred_actionness": torch.full((1, 2), 0.5),
           "saliency": torch.zeros(1, 4)}
    full = SetCriterion(LossConfig())(out, batch)
    ablated = SetCriterion(LossConfig(**ablation))(out, batch)
    for term in ("cls", "l1", "iou"):
        expected = full[term] * 0.0 if term in ablation else full[term]
        torch.testing.assert_close(ablated[term], expected)
    assert full["l1"] > 0  # the matched prediction is the confident one, 0.03 away


def test_matcher_costs_are_configured_apart_from_the_loss_weights():
    ann = {"train": "train.jsonl", "val": "val.jsonl"}
    run = synthetic_run(ann, loss={"cls": 0.0}, matcher={"iou": 2.0})
    assert run["train"]["loss"] == {"cls": 0.0} and run["train"]["matcher"] == {"iou": 2.0}
    assert MatcherConfig(**run["train"]["matcher"]) == MatcherConfig(iou=2.0)
    assert synthetic_run(ann)["train"]["matcher"] == {}
    with pytest.raises(ValueError, match="train.matcher"):
        synthetic_run(ann, matcher={"clss": 1.0})
