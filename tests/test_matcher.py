"""Hungarian matching invariants."""

from __future__ import annotations

import torch

from sdst.matcher import MatchCost, cost_matrix, hungarian_match


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
    c = cost_matrix(torch.zeros(1, 1), torch.tensor([[[0.5, 0.2]]]), torch.tensor([[[0.5, 0.2]]]), MatchCost())
    p_ = 0.5
    expected = 0.25 * (1 - p_) ** 2 * -torch.log(torch.tensor(p_)) - 0.75 * p_ ** 2 * -torch.log(torch.tensor(1 - p_))
    torch.testing.assert_close(c[0, 0, 0], expected, atol=1e-6, rtol=1e-5)
