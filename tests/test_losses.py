"""Losses: each term against a hand computation, and the total decreasing on a fixed batch."""

from __future__ import annotations

import math

import torch

from conftest import fit_one_batch, make_synthetic_cache, synthetic_run
from sdst.config import LossConfig
from sdst.data import FeatureDataset, cache_info, collate, split_queries
from sdst.losses import SetCriterion, layer_wise_nce, sampled_nce, sigmoid_focal, video_level_nce
from sdst.model import build_model
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
