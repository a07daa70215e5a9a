"""Comparison models (ActionFormer backbone x neck family, R2-Tuning): output contract, the masked contract
(batched == alone), ActionFormer's label assignment on a hand-worked example, learning on a fixed batch,
end-to-end training with checkpoint rebuild, and parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, fit_one_batch, make_synthetic_cache
from sdst.config import LossConfig, load_config, resolve_run
from sdst.data import FeatureDataset, cache_info, collate, split_queries
from sdst.model import build_criterion, build_model
from sdst.model.actionformer import BACKBONES, NECKS
from sdst.dense_losses import DenseCriterion, assign_points
from sdst.model.dense import PointGenerator, decode_spans, level_bounds
from sdst.postprocess import to_records
from sdst.train import fit_input_norms, train

DV, DT, K = 32, 24, 4
SMALL = {"actionformer": {"hidden_dim": 32, "heads": 4, "fusion_heads": 4},
         "r2tuning": {"hidden_dim": 32, "heads": 4}}
VARIANTS = [("actionformer", {"backbone": b, "neck": n}) for b in BACKBONES for n in NECKS] + [("r2tuning", {})]
IDS = [f"{a}-{p['backbone']}-{p['neck']}" if p else a for a, p in VARIANTS]


def _batch(lengths=(12, 9), n_tok=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    b, t, n = len(lengths), max(lengths), max(n_tok)
    vmask = torch.arange(t)[None] < torch.tensor(lengths)[:, None]
    tmask = torch.arange(n)[None] < torch.tensor(n_tok)[:, None]
    video = torch.randn(b, K, t, DV, generator=g) * vmask[:, None, :, None]
    text = torch.randn(b, K, n, DT, generator=g) * tmask[:, None, :, None]
    return {"video": video, "video_mask": vmask, "text": text, "text_mask": tmask,
            "saliency": torch.rand(b, t, generator=g) * 4 * vmask,
            "spans": [torch.tensor([[0.3, 0.2], [0.7, 0.3]]), torch.tensor([[0.5, 0.4]])][:b]}


def _model(arch, params, **extra):
    return build_model(arch, {**SMALL[arch], **params, **extra}, DV, DT, K)


@pytest.mark.parametrize("arch,params", VARIANTS, ids=IDS)
def test_output_contract_forward_backward(arch, params):
    torch.manual_seed(0)
    model = _model(arch, params)
    batch = _batch()
    out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
    t_pad = 16  # 12 clips padded to a multiple of the largest stride, 8; points over levels 16 + 8 + 4 + 2
    assert out["pred_logits"].shape == (2, 30) and out["pred_spans"].shape == (2, 30, 2)
    assert out["points"].shape == (30, 4) and out["level_sizes"] == [t_pad, 8, 4, 2]
    assert out["saliency"].shape == (2, 12) and (out["saliency"][1, 9:] == 0).all()
    assert ((out["pred_spans"] >= 0) & (out["pred_spans"] <= 1)).all()
    se = torch.stack([out["pred_spans"][..., 0] - out["pred_spans"][..., 1] / 2,
                      out["pred_spans"][..., 0] + out["pred_spans"][..., 1] / 2], -1)
    assert (se >= -1e-6).all() and (se <= 1 + 1e-6).all()
    # valid points: j * stride < clips (9 clips: 9 + 5 + 3 + 2); padded points have zero-width spans
    assert out["point_mask"].sum(1).tolist() == [12 + 6 + 3 + 2, 9 + 5 + 3 + 2]
    assert (out["pred_spans"][~out["point_mask"]] == 0).all()
    losses = build_criterion(arch, LossConfig())(out, batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and {"cls", "iou", "l1", "sal", "loss"} <= set(losses)
    assert ("align_video" in losses) == (arch == "r2tuning")
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    meta = [{"qid": i, "query": "q", "vid": f"v{i}", "n_clips": n, "duration": 2.0 * n} for i, n in enumerate((12, 9))]
    for rec, n in zip(to_records({k: v.detach() if torch.is_tensor(v) else v for k, v in out.items()}, meta, 2.0),
                      (12, 9)):
        windows = rec["pred_relevant_windows"]
        assert 1 <= len(windows) <= 10 and all(0 <= s < e <= 2.0 * n for s, e, _ in windows)
        assert len(rec["pred_saliency_scores"]) == n


def _randomise(model):
    """Move biases, LayerScales, level scales and gates off their initial values, so that a padding leak
    through LayerNorm biases or a near-zero residual branch cannot hide."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("bias", "scale", "gate")):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("n", [9, 16])
@pytest.mark.parametrize("arch,params", VARIANTS, ids=IDS)
def test_batched_equals_alone(arch, params, n):
    """A sample's outputs at its valid positions do not depend on the padding of its batch. With 16 clips the
    sample fills its own padded length (a multiple of 8), so a leak from padded positions shows."""
    torch.manual_seed(0)
    model = _model(arch, params).eval()
    _randomise(model)
    t_long, tok, tok_long = 21, 5, 8
    alone = _batch((n,), (tok,), seed=2)
    other = _batch((t_long,), (tok_long,), seed=3)
    video = torch.zeros(2, K, t_long, DV)
    text = torch.zeros(2, K, tok_long, DT)
    video[0, :, :n], video[1] = alone["video"][0], other["video"][0]
    text[0, :, :tok], text[1] = alone["text"][0], other["text"][0]
    vmask = torch.arange(t_long)[None] < torch.tensor([n, t_long])[:, None]
    tmask = torch.arange(tok_long)[None] < torch.tensor([tok, tok_long])[:, None]
    with torch.no_grad():
        a = model(alone["video"], alone["video_mask"], alone["text"], alone["text_mask"])
        b = model(video, vmask, text, tmask)
    assert a["level_sizes"] == [16, 8, 4, 2] and b["level_sizes"] == [24, 12, 6, 3]
    pa, pb = a["point_mask"][0], b["point_mask"][0]
    torch.testing.assert_close(a["points"][pa], b["points"][pb])  # same valid points, same order
    for key in ("pred_logits", "pred_spans", "pred_offsets"):
        torch.testing.assert_close(b[key][0][pb], a[key][0][pa], atol=1e-5, rtol=0)
    torch.testing.assert_close(b["saliency"][0, :n], a["saliency"][0], atol=1e-5, rtol=0)
    if "align_video" in a:
        torch.testing.assert_close(b["align_video"][:, 0, :n], a["align_video"][:, 0], atol=1e-5, rtol=0)


def test_label_assignment_by_hand():
    """Two levels over 8 clips: stride 1 points at 0.5..7.5 regress max distances in [0, 4]; stride 2 points
    at 0.5, 2.5, 4.5, 6.5 in [4, inf) (ActionFormer's ranges). Moments A = [1, 4], B = [0, 8], C = [2, 6].

    level 0, centre regions (centre ± 1.5, cut to the moment): A (1, 4) -> 1.5, 2.5, 3.5; C (2.5, 5.5) ->
      3.5, 4.5 (max distance 2.5); B (2.5, 5.5) -> 3.5, 4.5 but their max distance 4.5 > 4. Point 3.5 is a
      candidate for A (length 3) and C (length 4): the shorter, A, wins.
    level 1, centre regions ± 3: A (1, 4) -> 2.5 (max distance 1.5 < 4: no); C (1, 7) -> 2.5, 4.5 (3.5, 2.5:
      no); B (1, 7) -> 2.5, 4.5, 6.5 with max distances 5.5, 4.5, 6.5: all B.
    """
    points, sizes = PointGenerator([1, 2], level_bounds([1, 2], None))(8, "cpu")
    assert sizes == [8, 4] and points[:, 1:3].tolist()[0] == [0.0, 4.0] and points[8, 1] == 4.0
    gt = torch.tensor([[1.0, 4.0], [0.0, 8.0], [2.0, 6.0]])
    cls, reg, idx = assign_points(points, gt)
    A, B, C, none = 0, 1, 2, -1
    assert idx[:8].tolist() == [none, A, A, A, C, none, none, none]
    assert idx[8:].tolist() == [none, B, B, B]
    assert cls.tolist() == [float(i >= 0) for i in idx.tolist()]
    torch.testing.assert_close(reg[3], torch.tensor([2.5, 0.5]))  # point 3.5 -> A = [1, 4], stride 1
    torch.testing.assert_close(reg[4], torch.tensor([2.5, 1.5]))  # point 4.5 -> C = [2, 6]
    torch.testing.assert_close(reg[9], torch.tensor([1.25, 2.75]))  # point 2.5 -> B = [0, 8], stride 2
    # decoding the targets gives back the moments, as (centre, width) of the 8 clips
    spans = decode_spans(points, reg.unsqueeze(0), torch.tensor([8]))[0]
    for i in (cls > 0).nonzero().flatten().tolist():
        s, e = gt[idx[i]] / 8
        torch.testing.assert_close(spans[i], torch.stack([(s + e) / 2, e - s]))
    # the criterion reaches the same targets from (centre, width) spans of a sample's valid length
    out = {"points": points, "lengths": torch.tensor([8])}
    cw = torch.stack([(gt[:, 0] + gt[:, 1]) / 16, (gt[:, 1] - gt[:, 0]) / 8], -1)
    cls2, reg2, _ = DenseCriterion().targets(out, [cw])
    torch.testing.assert_close(cls2[0], cls)
    torch.testing.assert_close(reg2[0], reg)
    # no moment: no positive
    assert assign_points(points, torch.zeros(0, 2))[0].sum() == 0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_cache(tmp_path_factory.mktemp("syn"))


def _syn_config(ann: dict) -> dict:
    return {
        "datasets": {"syn": {"annotations": ann, "videos": "unused", "backbone": "tiny", "clip_len": 2.0,
                             "saliency": "qvh",
                             "splits": {"train": "train", "select": {"holdout": 0.25}, "report": ["val"]}}},
        "model": {"default": "af", "variants": {
            "af": {"arch": "actionformer", "backbone": "sgp", "neck": "fpn", **SMALL["actionformer"]},
            "actionformer": {"arch": "actionformer", **SMALL["actionformer"]},
            "r2tuning": {"arch": "r2tuning", **SMALL["r2tuning"]}}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 5e-4, "warmup_iters": 5, "lr_step": 100, "min_clips": 0,
                  "threads": 1, "device": "cpu"},
    }


@pytest.mark.parametrize("variant", ["actionformer", "r2tuning"])
def test_loss_decreases_on_a_fixed_batch(synthetic, variant):
    torch.manual_seed(0)
    run = resolve_run(_syn_config(synthetic["annotations"]), "syn", variant)
    info = cache_info(synthetic["summary"])
    ds = FeatureDataset(split_queries(run["data"])["train"][:16], info.store, 2.0, "qvh", preload=True)
    batch = collate([ds[i] for i in range(len(ds))])
    no_noise = {k: 0.0 for k in ("input_dropout", "dropout", "droppath") if k in run["model"]["params"]}
    model = build_model(run["model"]["arch"], {**run["model"]["params"], **no_noise}, info.video_dim, info.text_dim,
                        info.layers)
    fit_input_norms(model, ds)
    crit = build_criterion(run["model"]["arch"], LossConfig())
    history, losses = fit_one_batch(model, crit, batch)
    assert sum(history[-5:]) / 5 < 0.5 * sum(history[:5]) / 5, history


@pytest.mark.parametrize("variant", ["af", "r2tuning"])
def test_train_end_to_end_and_rebuild_from_checkpoint(synthetic, tmp_path, variant):
    from sdst.checkpoint import model_from_checkpoint

    run = resolve_run(_syn_config(synthetic["annotations"]), "syn", variant)
    summary = train(run, synthetic["summary"], tmp_path, progress=False)
    assert summary["epochs"] == 2 and (tmp_path / "checkpoint_best.pt").is_file()
    model, loaded_run, dims = model_from_checkpoint(tmp_path / "checkpoint_best.pt")
    assert loaded_run == run and type(model).__name__ == {"af": "ActionFormer", "r2tuning": "R2Tuning"}[variant]
    state = torch.load(tmp_path / "checkpoint_best.pt", weights_only=True)["model"]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.video_norm.std.ne(1).any()  # the input standardisation was fitted and carried


NEW_VARIANTS = ["actionformer", "af_transformer_fpn", "af_conv", "af_conv_fpn", "af_sgp", "af_sgp_fpn", "r2tuning"]


def test_parameter_counts_of_every_new_variant():
    from sdst.params import count

    config = load_config(ROOT / "config.yaml")
    counts = {v: count(config, "qvh", v) for v in NEW_VARIANTS}
    expected = {"actionformer": ("transformer", "identity"), "af_transformer_fpn": ("transformer", "fpn"),
                "af_conv": ("conv", "identity"), "af_conv_fpn": ("conv", "fpn"), "af_sgp": ("sgp", "identity"),
                "af_sgp_fpn": ("sgp", "fpn")}
    for v, (backbone, neck) in expected.items():
        assert counts[v]["arch"] == "actionformer"
        assert (counts[v]["params"]["backbone"], counts[v]["params"]["neck"]) == (backbone, neck)
        assert counts[v]["learnable_parameters"] > 1_000_000
    # the FPN neck adds exactly its lateral 1x1 and depthwise 3x1 convs (bias-free) per level
    f, levels = 256, 4
    assert (counts["af_sgp_fpn"]["learnable_parameters"] - counts["af_sgp"]["learnable_parameters"]
            == levels * (f * f + 3 * f))
    # R2-Tuning: 2.7 M learnable parameters on QVHighlights (SDST Tab. D); within 15% in either convention
    r2 = counts["r2tuning"]
    assert r2["dims"] == {"video": 768, "text": 1024, "layers": 4}
    assert abs(r2["millions"] - 2.7) / 2.7 <= 0.15 and abs(r2["mebi"] - 2.7) / 2.7 <= 0.15
    # and the command line answers for a new variant
    cli = subprocess.run([sys.executable, "-m", "sdst.params", "--config", str(ROOT / "config.yaml"), "--dataset",
                          "qvh", "--model", "af_sgp_fpn"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(cli.stdout)["learnable_parameters"] == counts["af_sgp_fpn"]["learnable_parameters"]


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="backbone: must be one of"):
        _model("actionformer", {"backbone": "mamba"})
    with pytest.raises(ValueError, match="neck: must be one of"):
        _model("actionformer", {"neck": "bifpn"})
    with pytest.raises(ValueError, match="not among the 4 cached layers"):
        _model("actionformer", {"cache_level": -5})
    with pytest.raises(ValueError, match="not among the 4 cached layers"):
        _model("r2tuning", {"levels": [-1, -5]})
    with pytest.raises(ValueError, match="powers of 2"):
        _model("r2tuning", {"strides": [1, 3]})
