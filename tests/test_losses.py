"""Losses: each term against a hand computation, the total decreasing on a fixed batch, float32 under bf16."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fit_one_batch, make_synthetic_cache, synthetic_run
from sdst.config import LossConfig
from sdst.data import FeatureDataset, cache_info, collate, split_queries
from sdst.losses import SetCriterion, layer_wise_nce, sampled_nce, sigmoid_focal, video_level_nce
from sdst.model import build_criterion, build_model
from sdst.train import fit_input_norms


def test_focal_loss_by_hand():
    # logit 0 -> p = 0.5; target 1: alpha (1-p)^2 * -log p = 0.25 * 0.25 * ln 2
    got = sigmoid_focal(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), 0.25, 2.0)
    torch.testing.assert_close(got, torch.tensor([0.0625 * math.log(2), 0.75 * 0.25 * math.log(2)]))


def test_sampled_nce_ranks_positive_above_less_salient_clips_only():
    sim = torch.tensor([[0.9, 0.1, 0.2, 5.0]])
    sal = torch.tensor([[3.0, 1.0, 0.0, 4.0]])  # clip 3 is more salient than the positive: excluded
    mask = torch.tensor([[True, True, True, True]])
    loss = sampled_nce(sim, sal, mask, torch.tensor([0]), torch.tensor([True]), tau=1.0)
    expected = -(0.9 - torch.logsumexp(torch.tensor([0.9, 0.1, 0.2]), 0))
    torch.testing.assert_close(loss, expected)


def test_alignment_terms_prefer_matching_pairs():
    torch.manual_seed(0)
    t = torch.randn(3, 8)
    V = torch.randn(3, 5, 8)
    V[torch.arange(3), torch.tensor([1, 2, 0])] = t  # each query's positive clip equals its text
    mask = torch.ones(3, 5, dtype=torch.bool)
    pos, has = torch.tensor([1, 2, 0]), torch.ones(3, dtype=torch.bool)
    aligned = video_level_nce(V, t, mask, pos, has, 0.07)
    shuffled = video_level_nce(V, t.roll(1, 0), mask, pos, has, 0.07)
    assert aligned < 0.1 < shuffled
    # layer-wise: level l's text matches its own level's clip, not the other levels'
    VK = torch.randn(2, 3, 5, 8)
    tk = torch.stack([VK[0, torch.arange(3), pos], VK[1, torch.arange(3), pos]])
    assert layer_wise_nce(VK, tk, pos, has, 0.07) < 0.1 < layer_wise_nce(VK, tk.flip(0), pos, has, 0.07)


def test_total_loss_decreases_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    syn = make_synthetic_cache(tmp_path)
    run = synthetic_run(syn["annotations"])
    info = cache_info(syn["summary"])
    ds = FeatureDataset(split_queries(run["data"])["train"][:16], info.store, 2.0, "qvh", preload=True)
    batch = collate([ds[i] for i in range(len(ds))])
    params = {**run["model"]["params"], "input_dropout": 0.0, "droppath": 0.0}  # fit the batch, no noise floor
    model = build_model("sdst", params, info.video_dim, info.text_dim, info.layers)
    fit_input_norms(model, ds)
    crit = SetCriterion(LossConfig())
    history, losses = fit_one_batch(model, crit, batch)
    assert sum(history[-5:]) / 5 < 0.5 * sum(history[:5]) / 5, history
    assert set(losses) >= {"cls", "l1", "iou", "act", "sal", "align_video", "align_layer", "aux0_cls", "loss"}


def _cast(out, dtype):
    if isinstance(out, dict):
        return {k: _cast(v, dtype) for k, v in out.items()}
    if isinstance(out, list):
        return [_cast(v, dtype) for v in out]
    return out.to(dtype) if torch.is_tensor(out) and out.is_floating_point() else out


@pytest.mark.parametrize("arch", ["sdst", "r2tuning"])
def test_losses_are_float32_when_the_model_ran_in_bfloat16(arch):
    """Mixed precision (§A): the outputs come in bf16; every loss term (and the matching) runs in float32,
    so it equals the loss of the same outputs cast to float32 first, inside an autocast region or not."""
    torch.manual_seed(0)
    b, t, n = 3, 12, 6
    vmask = torch.arange(t)[None] < torch.tensor([[12], [9], [7]])
    tmask = torch.arange(n)[None] < torch.tensor([[6], [4], [5]])
    batch = {"video": torch.randn(b, 4, t, 32), "video_mask": vmask, "text": torch.randn(b, 4, n, 24),
             "text_mask": tmask, "saliency": torch.randint(0, 5, (b, t)).float() * vmask,
             "spans": [torch.tensor([[0.3, 0.2], [0.7, 0.3]]), torch.tensor([[0.5, 0.4]]), torch.tensor([[0.2, 0.1]])]}
    params = {"hidden_dim": 32, "heads": 4, **({"num_queries": 6, "deform_heads": 4} if arch == "sdst" else {})}
    model = build_model(arch, params, 32, 24, 4)
    out16 = _cast(model(batch["video"], vmask, batch["text"], tmask), torch.bfloat16)
    crit = build_criterion(arch, LossConfig())
    torch.manual_seed(1)  # the positive clip of SampledNCE is drawn from torch's RNG
    got = crit(out16, batch)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = crit(out16, batch)
    torch.manual_seed(1)
    expected = crit(_cast(out16, torch.float32), batch)
    assert set(got) == set(expected)
    for k in expected:
        assert got[k].dtype == torch.float32 and in_autocast[k].dtype == torch.float32, k
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
        torch.testing.assert_close(in_autocast[k], expected[k], rtol=0, atol=0)
    got["loss"].backward()  # gradients flow back into the bf16 outputs


def test_classification_loss_normalised_by_queries_or_by_windows():
    """Eq. 17 averages the focal loss over the M queries (then the batch); DETR's code sums it and divides by the
    number of ground-truth windows (loss.cls_norm "windows"). Two videos, 3 queries, 1 and 2 windows."""
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    spans = torch.tensor([[[0.2, 0.1], [0.5, 0.2], [0.8, 0.1]], [[0.3, 0.2], [0.6, 0.1], [0.9, 0.05]]])
    targets = [torch.tensor([[0.2, 0.1]]), torch.tensor([[0.3, 0.2], [0.6, 0.1]])]
    by_query = SetCriterion(LossConfig())._moment_losses(logits, spans, targets, "")["cls"]
    by_window = SetCriterion(LossConfig(cls_norm="windows"))._moment_losses(logits, spans, targets, "")["cls"]
    # each window matches the query at its own place: queries (0, 0), (1, 0), (1, 1) are positives
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    p = logits.sigmoid()
    focal = torch.where(target == 1, 0.25 * (1 - p) ** 2 * -torch.log(p), 0.75 * p ** 2 * -torch.log(1 - p))
    torch.testing.assert_close(by_query, focal.sum() / 6)
    torch.testing.assert_close(by_window, focal.sum() / 3)


def test_the_dense_detectors_refuse_a_classification_normalisation_they_do_not_have():
    with pytest.raises(ValueError, match="cls_norm"):
        build_criterion("actionformer", LossConfig(cls_norm="windows"))
